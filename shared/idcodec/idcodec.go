// Package idcodec encodes and decodes idgen transaction IDs.
//
// An ID is an RFC 9562 UUIDv8 (128 bits, canonical 36-character text):
//
//	bits   0..47   unix_ts_ms   48  issue time in ms
//	bits  48..51   ver          4   0b1000 (8)
//	bits  52..63   worker       12  worker slot (0..4095)
//	bits  64..65   var          2   0b10
//	bits  66..71   shard        6   coordination domain (0..63)
//	bits  72..127  counter      56  from the shard's global range counter
//
// Invariants: Compose and Decompose are exact inverses for every field value in
// range; the byte order of IDs equals the order of (timestamp, worker, shard,
// counter), so IDs of one instance sort by issue time; Format always writes
// lowercase and Parse accepts either case. Uniqueness rests on (shard, counter)
// alone: that pair is never handed out twice by the allocators.
package idcodec

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Field limits of the layout.
const (
	MaxTimestamp = 1<<48 - 1 // largest unix millisecond that fits
	MaxWorker    = 1<<12 - 1 // largest worker slot
	MaxShard     = 1<<6 - 1  // largest shard
	MaxCounter   = 1<<56 - 1 // largest counter value
	// Version is the RFC 9562 version nibble of every ID.
	Version = 8
	// TextLen is the length of the canonical text form.
	TextLen = 36
)

// Sentinel errors; test with errors.Is.
var (
	// ErrSyntax means the text is not a canonical 36-character UUID.
	ErrSyntax = errors.New("idcodec: not a UUID in canonical form")
	// ErrNotOurs means the text is a UUID, but not a version 8 / variant 10 ID.
	ErrNotOurs = errors.New("idcodec: not an idgen ID (version 8, variant 10)")
	// ErrRange means a field passed to Compose is out of range.
	ErrRange = errors.New("idcodec: field out of range")
)

// ID is a 128-bit transaction ID in big-endian byte order, comparable and
// usable as a map key. The zero value is not a valid ID.
type ID [16]byte

// Fields are the decoded parts of an ID.
type Fields struct {
	TimestampMS uint64 // unix milliseconds, ≤ MaxTimestamp
	Worker      uint16 // ≤ MaxWorker
	Shard       uint8  // ≤ MaxShard
	Counter     uint64 // ≤ MaxCounter
}

// Compose builds an ID from its fields. It returns ErrRange when a field does
// not fit its bit width.
func Compose(f Fields) (ID, error) {
	if f.TimestampMS > MaxTimestamp || f.Worker > MaxWorker || f.Shard > MaxShard || f.Counter > MaxCounter {
		return ID{}, fmt.Errorf("%w: %+v", ErrRange, f)
	}
	return compose(f), nil
}

// compose is Compose without the range checks, for callers that hold valid
// fields by construction (the hot path).
func compose(f Fields) ID {
	var id ID
	hi := f.TimestampMS<<16 | uint64(Version)<<12 | uint64(f.Worker)
	lo := uint64(0b10)<<62 | uint64(f.Shard)<<56 | f.Counter
	binary.BigEndian.PutUint64(id[0:8], hi)
	binary.BigEndian.PutUint64(id[8:16], lo)
	return id
}

// Decompose returns the fields of id. It does not check version and variant;
// use Valid for that.
func (id ID) Decompose() Fields {
	hi := binary.BigEndian.Uint64(id[0:8])
	lo := binary.BigEndian.Uint64(id[8:16])
	return Fields{
		TimestampMS: hi >> 16,
		Worker:      uint16(hi & MaxWorker),
		Shard:       uint8(lo >> 56 & MaxShard),
		Counter:     lo & MaxCounter,
	}
}

// Valid reports whether id carries version 8 and variant 10.
func (id ID) Valid() bool {
	return id[6]>>4 == Version && id[8]>>6 == 0b10
}

// Time returns the issue time encoded in id.
func (id ID) Time() time.Time {
	return time.UnixMilli(int64(id.Decompose().TimestampMS)).UTC()
}

// String returns the canonical lowercase text form.
func (id ID) String() string {
	var b [TextLen]byte
	id.put(b[:])
	return string(b[:])
}

// AppendText appends the canonical text form to dst without allocating when
// dst has room.
func (id ID) AppendText(dst []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, TextLen)...)
	id.put(dst[n:])
	return dst
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return id.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler with Parse's rules.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseBytes(b)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

const hexdigits = "0123456789abcdef"

// hexPairs holds the two lowercase hex digits of every byte value.
var hexPairs = func() (t [256][2]byte) {
	for i := range t {
		t[i] = [2]byte{hexdigits[i>>4], hexdigits[i&0xf]}
	}
	return t
}()

// put writes the canonical text form of id into b[:TextLen]: a byte's two
// digits from hexPairs, the four dashes at their fixed places (a batch's
// answer formats a thousand IDs, so this is the loop it spends most in).
func (id ID) put(b []byte) {
	b = b[:TextLen]
	putHex(b[0:8], id[0:4])
	b[8] = '-'
	putHex(b[9:13], id[4:6])
	b[13] = '-'
	putHex(b[14:18], id[6:8])
	b[18] = '-'
	putHex(b[19:23], id[8:10])
	b[23] = '-'
	putHex(b[24:36], id[10:16])
}

// putHex writes the hex digits of src into dst, which holds 2*len(src).
func putHex(dst, src []byte) {
	for i, c := range src {
		p := hexPairs[c]
		dst[2*i], dst[2*i+1] = p[0], p[1]
	}
}

// Parse decodes the canonical text form (either case). It returns ErrSyntax
// for anything that is not a 36-character UUID and ErrNotOurs for a UUID of
// another version or variant.
func Parse(s string) (ID, error) { return ParseBytes([]byte(s)) }

// ParseBytes is Parse for a byte slice.
func ParseBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != TextLen || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return id, ErrSyntax
	}
	j := 0
	for i := 0; i < TextLen; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		var pair [1]byte
		if _, err := hex.Decode(pair[:], b[i:i+2]); err != nil {
			return ID{}, ErrSyntax
		}
		id[j] = pair[0]
		j++
		i += 2
	}
	if !id.Valid() {
		return ID{}, ErrNotOurs
	}
	return id, nil
}

// MustCompose is Compose for fields known to be in range; it panics
// otherwise. The generator uses it on values it bounds itself.
func MustCompose(f Fields) ID {
	if f.TimestampMS > MaxTimestamp || f.Worker > MaxWorker || f.Shard > MaxShard || f.Counter > MaxCounter {
		panic(fmt.Sprintf("idcodec: field out of range: %+v", f))
	}
	return compose(f)
}

// FillRun writes len(out) IDs with the fields of f and consecutive counters
// from f.Counter, the batch form of MustCompose: the fields are checked once
// and each ID costs two stores. It panics when a field is out of range.
func FillRun(out []ID, f Fields) {
	if len(out) == 0 {
		return
	}
	lastCounter := f.Counter + uint64(len(out)-1)
	if f.TimestampMS > MaxTimestamp || f.Worker > MaxWorker || f.Shard > MaxShard || lastCounter > MaxCounter || lastCounter < f.Counter {
		panic(fmt.Sprintf("idcodec: field out of range: %+v (run of %d)", f, len(out)))
	}
	hi := f.TimestampMS<<16 | uint64(Version)<<12 | uint64(f.Worker)
	lo := uint64(0b10)<<62 | uint64(f.Shard)<<56 | f.Counter
	for i := range out {
		binary.BigEndian.PutUint64(out[i][0:8], hi)
		binary.BigEndian.PutUint64(out[i][8:16], lo+uint64(i))
	}
}
