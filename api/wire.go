package api

import "encoding/json"

// IDRecord is the body of GET /ids/{id} (the document's IDRecord): the
// service encodes it and the Go client decodes it, so both read one
// definition of the wire form.
type IDRecord struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Worker    uint16 `json:"worker"`
	Shard     uint8  `json:"shard"`
	Counter   uint64 `json:"counter"`
	// State is pending, committed or compensated.
	State string `json:"state"`
	// IssuedAt is null for a record stored before issue times were kept,
	// and for a tombstone.
	IssuedAt  *string `json:"issued_at"`
	Deadline  string  `json:"deadline,omitempty"`
	Subject   string  `json:"subject,omitempty"`
	Tombstone bool    `json:"tombstone,omitempty"`
	// Metadata is shown to the issuing subject and to ids:admin only.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// MetadataErased: the subject's data key was erased (crypto-shredding).
	MetadataErased bool   `json:"metadata_erased,omitempty"`
	History        []Step `json:"history"`
}

// Step is one transition of an IDRecord's history.
type Step struct {
	State  string `json:"state"`
	At     string `json:"at"`
	Reason string `json:"reason,omitempty"`
	Actor  string `json:"actor,omitempty"`
}
