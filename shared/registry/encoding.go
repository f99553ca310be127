package registry

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/idgen/idgen/shared/idcodec"
)

// ErrCorrupt means stored bytes do not decode.
var ErrCorrupt = errors.New("registry: corrupt record")

const recordFormat = 1

const flagTombstone = 1

// MarshalBinary encodes r compactly (the ID itself is the key, not stored):
// format byte, state, flags, then varints and length-prefixed strings. A
// pending record without subject or metadata takes about 12 bytes.
func (r *Record) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, 24+len(r.Subject)+len(r.IdemKeyHash)+len(r.Metadata))), nil
}

// AppendBinary appends the encoding of r to b.
func (r *Record) AppendBinary(b []byte) []byte {
	var flags byte
	if r.Tombstone {
		flags |= flagTombstone
	}
	b = append(b, recordFormat, byte(r.State), flags)
	b = binary.AppendUvarint(b, uint64(r.IssuedAtMS))
	b = binary.AppendUvarint(b, uint64(r.DeadlineMS))
	b = appendBytes(b, []byte(r.Subject))
	b = appendBytes(b, r.IdemKeyHash)
	b = appendBytes(b, r.Metadata)
	b = binary.AppendUvarint(b, uint64(len(r.History)))
	for _, s := range r.History {
		b = append(b, byte(s.State))
		b = binary.AppendUvarint(b, uint64(s.AtMS))
		b = appendBytes(b, []byte(s.Reason))
		b = appendBytes(b, []byte(s.Actor))
	}
	return b
}

// SameBody reports whether r and o are alike but for their IDs: then
// AppendBinary, which does not encode the ID, writes the same bytes for
// both. The records of a batch are alike but for their IDs, so a backend
// encodes the first and compares the others with SameBody, which costs a
// fraction of an encoding.
func (r *Record) SameBody(o *Record) bool {
	return r.State == o.State && r.IssuedAtMS == o.IssuedAtMS && r.DeadlineMS == o.DeadlineMS &&
		r.Tombstone == o.Tombstone && r.Subject == o.Subject &&
		bytes.Equal(r.IdemKeyHash, o.IdemKeyHash) && bytes.Equal(r.Metadata, o.Metadata) &&
		slices.Equal(r.History, o.History)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// DecodeRecord decodes what AppendBinary wrote for id.
func DecodeRecord(id idcodec.ID, b []byte) (Record, error) {
	d := decoder{b: b}
	r := Record{ID: id}
	if d.byte() != recordFormat {
		return Record{}, fmt.Errorf("%w: unknown format", ErrCorrupt)
	}
	r.State = State(d.byte())
	r.Tombstone = d.byte()&flagTombstone != 0
	r.IssuedAtMS = int64(d.uvarint())
	r.DeadlineMS = int64(d.uvarint())
	r.Subject = string(d.bytes())
	r.IdemKeyHash = d.bytes()
	r.Metadata = d.bytes()
	n := d.uvarint()
	if n > uint64(len(b)) {
		return Record{}, fmt.Errorf("%w: history length", ErrCorrupt)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var s Step
		s.State = State(d.byte())
		s.AtMS = int64(d.uvarint())
		s.Reason = string(d.bytes())
		s.Actor = string(d.bytes())
		r.History = append(r.History, s)
	}
	if d.err != nil || r.State < Pending || r.State > Compensated {
		return Record{}, fmt.Errorf("%w: %s", ErrCorrupt, id)
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = ErrCorrupt
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = ErrCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = ErrCorrupt
		return nil
	}
	if n == 0 {
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

// MarshalBinary encodes e: body hash, created ms, batch flag, IDs.
func (e *IdemEntry) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 32+10+1+2+16*len(e.IDs))
	b = append(b, e.BodyHash[:]...)
	b = binary.AppendUvarint(b, uint64(e.CreatedMS))
	if e.Batch {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(e.IDs)))
	for _, id := range e.IDs {
		b = append(b, id[:]...)
	}
	return b, nil
}

// DecodeIdemEntry decodes what IdemEntry.MarshalBinary wrote for keyHash.
func DecodeIdemEntry(keyHash [32]byte, b []byte) (IdemEntry, error) {
	e := IdemEntry{KeyHash: keyHash}
	if len(b) < 32 {
		return e, ErrCorrupt
	}
	copy(e.BodyHash[:], b)
	d := decoder{b: b[32:]}
	e.CreatedMS = int64(d.uvarint())
	e.Batch = d.byte() == 1
	n := d.uvarint()
	if d.err != nil || n*16 != uint64(len(d.b)) {
		return e, ErrCorrupt
	}
	e.IDs = make([]idcodec.ID, n)
	for i := range e.IDs {
		copy(e.IDs[i][:], d.b[16*i:])
	}
	return e, nil
}
