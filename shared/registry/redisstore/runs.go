package redisstore

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/idgen/idgen/shared/registry"
)

// RunsField is the field of a record bucket that holds its run-length
// records: records of consecutive counters of one bucket with one value
// (a batch stamped in one millisecond, or the single IDs of one
// millisecond that one flush registers), stored as one entry instead of
// one field each. An entry is the first offset in the bucket
// (1 byte), the count (1 byte), the value's length (2 bytes, big-endian)
// and the value. A counter's record is its own field when there is one (a
// registration field by field, or a later compare-and-set over a run),
// else the value of the run that covers it (see batchSource).
const RunsField = "r"

// run is one run-length record: offsets lo..lo+n-1 hold val.
type run struct {
	lo, n int
	val   []byte
}

// parseRuns decodes a RunsField value.
func parseRuns(b []byte) ([]run, error) {
	var out []run
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: run entry of %d bytes", registry.ErrCorrupt, len(b))
		}
		lo, n, l := int(b[0]), int(b[1]), int(binary.BigEndian.Uint16(b[2:4]))
		if n == 0 || lo+n > 1<<bucketBits || len(b) < 4+l {
			return nil, fmt.Errorf("%w: run entry at offset %d of %d counters, %d-byte value in %d bytes", registry.ErrCorrupt, lo, n, l, len(b)-4)
		}
		out = append(out, run{lo: lo, n: n, val: b[4 : 4+l : 4+l]})
		b = b[4+l:]
	}
	return out, nil
}

// FieldValue is the record of the counter at offset off of a bucket, from
// its field and its RunsField (HMGET bucket off r): the field when it
// exists, else the value of the run covering off, nil when neither holds
// it. A malformed RunsField is registry.ErrCorrupt.
func FieldValue(off int, field, runs []byte) ([]byte, error) {
	if field != nil {
		return field, nil
	}
	rs, err := parseRuns(runs)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if r.lo <= off && off < r.lo+r.n {
			return r.val, nil
		}
	}
	return nil, nil
}

// BucketValues is every record of a bucket read whole (HGETALL): offset →
// value, a field over the run that covers the same offset, the first run
// over a later one (as FieldValue and the batch script read). A field that
// is neither an offset (0..127) nor RunsField, or a malformed RunsField,
// is registry.ErrCorrupt.
func BucketValues(h map[string]string) (map[int][]byte, error) {
	out := make(map[int][]byte, len(h))
	if r, ok := h[RunsField]; ok {
		rs, err := parseRuns([]byte(r))
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			for o := r.lo; o < r.lo+r.n; o++ {
				if _, ok := out[o]; !ok {
					out[o] = r.val
				}
			}
		}
	}
	for f, v := range h {
		if f == RunsField {
			continue
		}
		o, err := strconv.ParseUint(f, 10, 8)
		if err != nil || o >= 1<<bucketBits {
			return nil, fmt.Errorf("%w: bucket field %q", registry.ErrCorrupt, f)
		}
		out[int(o)] = []byte(v)
	}
	return out, nil
}
