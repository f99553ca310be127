package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// The hash chain. Every line a Log writes ends in three fields the writer
// goroutine adds when it writes the line:
//
//	"writer":"<16 hex>","seq":<n>,"prev":"<64 hex>"}
//
// writer is drawn at random when the Log opens, so each life of each
// process is a chain of its own; seq counts the chain's lines from 1 (the
// audit.start line, which has no prev); prev is the hex SHA-256 of the
// previous line of the chain as written, without its newline. A line's
// canonical bytes are its bytes in the file: nothing is re-encoded to
// verify it.
//
// The chain advances only over lines that are durable: flush renders a
// batch from a copy of the chain state and adopts the state after the last
// whole line that write reports kept. A line cut off after a failed write
// is rendered again, with the same seq, when it is retried; so the chain
// in the file has no gaps although entries are given back.

// chain is the state of a Log's chain after its last durable line. Owned
// by the writer goroutine.
type chain struct {
	writer string
	seq    uint64   // of the last line; 0 before the first
	hash   [32]byte // SHA-256 of the last line
	since  int      // lines since the last checkpoint (checkpoints excluded)
}

// newWriterID is a random chain name: 64 bits, so two lives of the
// instances of one deployment do not share one.
func newWriterID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}

// appendLine appends body (a JSON object without its closing brace)
// closed by the chain fields and a newline, and advances c over it.
func (c *chain) appendLine(buf, body []byte) []byte {
	start := len(buf)
	c.seq++
	buf = append(buf, body...)
	buf = append(buf, `,"writer":"`...)
	buf = append(buf, c.writer...)
	buf = append(buf, `","seq":`...)
	buf = strconv.AppendUint(buf, c.seq, 10)
	if c.seq > 1 {
		buf = append(buf, `,"prev":"`...)
		buf = hex.AppendEncode(buf, c.hash[:])
		buf = append(buf, '"')
	}
	buf = append(buf, '}')
	c.hash = sha256.Sum256(buf[start:])
	return append(buf, '\n')
}

// openBody is a marshaled JSON object without its closing brace, ready for
// appendLine.
func openBody(obj []byte) []byte {
	return obj[:len(obj)-1]
}
