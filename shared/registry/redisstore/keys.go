package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// Key layout (P = Config.Prefix). Every key carries a hash tag, so that what
// one script touches in Cluster mode is in one slot:
//
//	P r:{<shard>:<counter>>7>}  hash: field counter&127 → record value;
//	                            field r (RunsField) → the bucket's runs
//	P s:{<shard>:<counter>>7>}  string: the bucket's state map, 128 bytes,
//	                            byte i the registry.CounterState of field i
//	P k:{<hex keyhash>}         string: idempotency entry, PX = its TTL
//	P deadlines:{<shard>}       sorted set: score deadline ms, member id[16]
//	P hw:{<shard>}              string: high-water mark, 16 hex digits
//
// A bucket written record by record holds at most 128 fields of small
// values, so it stays a listpack (hash-max-listpack-entries 128,
// hash-max-listpack-value 64 by default); a batch's records are one run
// (about 60 bytes) per bucket, as are the single IDs of one millisecond
// that one flush registers, and a bucket whose runs pass 64 bytes becomes
// a small hash table of a few fields. A run whose members all got fields
// of their own (a commit of each) goes, and a bucket whose last run goes
// is rewritten: its 128 fields are a listpack again.
// A bucket and its state map share a hash tag, so one script call in one
// slot writes both (see batchSource).

// bucketBits is log2 of the fields per bucket: a bucket is the counters of
// one state map.
const bucketBits = registry.StateMapBits

// stateKeyOf is the key of the state map of the bucket whose key is
// bucketKey: "r:{" becomes "s:{" (the prefix holds no brace).
func stateKeyOf(bucketKey string) string {
	i := strings.IndexByte(bucketKey, '{')
	return bucketKey[:i-2] + "s" + bucketKey[i-1:]
}

// fieldNames are the names of a bucket's fields, "0" to "127", made once.
var fieldNames = func() (n [1 << bucketBits]string) {
	for i := range n {
		n[i] = strconv.Itoa(i)
	}
	return n
}()

// fieldOf is the name of id's field in its bucket.
func fieldOf(id idcodec.ID) string {
	return fieldNames[id[15]&(1<<bucketBits-1)]
}

// sameBucket reports whether a and b are in one bucket: the same shard and
// the same counter but for its last bucketBits bits (the low 8 bytes hold
// the variant, the shard and the counter).
func sameBucket(a, b idcodec.ID) bool {
	return binary.BigEndian.Uint64(a[8:])>>bucketBits == binary.BigEndian.Uint64(b[8:])>>bucketBits
}

// bucketName is a bucket's key, remembered because consecutive IDs share it.
type bucketName struct {
	shard, num uint64
	key        string
}

func (s *Store) bucket(id idcodec.ID) (key, field string) {
	lo := binary.BigEndian.Uint64(id[8:])
	shard := lo >> 56 & idcodec.MaxShard
	counter := lo & idcodec.MaxCounter
	field = fieldOf(id)
	if last := s.lastBucket.Load(); last != nil && last.shard == shard && last.num == counter>>bucketBits {
		return last.key, field
	}
	b := make([]byte, 0, len(s.cfg.Prefix)+32)
	b = append(b, s.cfg.Prefix...)
	b = append(b, "r:{"...)
	b = strconv.AppendUint(b, shard, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, counter>>bucketBits, 10)
	b = append(b, '}')
	key = string(b)
	s.lastBucket.Store(&bucketName{shard: shard, num: counter >> bucketBits, key: key})
	return key, field
}

func (s *Store) idemKey(kh [32]byte) string {
	const hexdigits = "0123456789abcdef"
	b := make([]byte, 0, len(s.cfg.Prefix)+2+2+64+1)
	b = append(b, s.cfg.Prefix...)
	b = append(b, "k:{"...)
	for _, c := range kh {
		b = append(b, hexdigits[c>>4], hexdigits[c&15])
	}
	return string(append(b, '}'))
}

func (s *Store) deadlineKey(shard uint8) string {
	return s.cfg.Prefix + "deadlines:{" + strconv.Itoa(int(shard)) + "}"
}

func (s *Store) highWaterKey() string {
	return s.cfg.Prefix + "hw:{" + strconv.Itoa(int(s.cfg.Shard)) + "}"
}

func shardOf(id idcodec.ID) uint8 { return id[8] & idcodec.MaxShard }

// Record values: hi[8] nonce[4] elide[1] registry.Record.AppendBinary of the
// record without what elide says is redundant.
//
// hi is the ID's first half (timestamp, version, worker): a bucket field is
// addressed by (shard, counter) alone, so hi tells a different ID with the
// same (shard, counter) (a collision) from the record's own. The nonce makes
// two writers' values differ even for byte-identical records, so that an
// equal value can only be a retry of the same write.
const (
	valueHeader = 8 + 4 + 1

	elideIssued  = 1 << 0 // IssuedAtMS equals the ID's timestamp
	elidePending = 1 << 1 // History[0] is {Pending, IssuedAtMS, "", Subject}
)

// errOtherID means the field holds the record of another ID with the same
// (shard, counter).
var errOtherID = errors.New("field held by another ID")

func appendValue(dst []byte, rec *registry.Record, nonce uint32) []byte {
	dst = append(dst, rec.ID[:8]...)
	dst = binary.BigEndian.AppendUint32(dst, nonce)
	r := *rec
	var elide byte
	if ts := int64(rec.ID.Decompose().TimestampMS); r.IssuedAtMS == ts && ts != 0 {
		elide |= elideIssued
	}
	if len(r.History) > 0 && r.History[0] == (registry.Step{State: registry.Pending, AtMS: r.IssuedAtMS, Actor: r.Subject}) {
		elide |= elidePending
		r.History = r.History[1:]
	}
	if elide&elideIssued != 0 {
		r.IssuedAtMS = 0
	}
	dst = append(dst, elide)
	return r.AppendBinary(dst)
}

// decodeValue decodes what appendValue wrote for id. Errors: errOtherID,
// registry.ErrCorrupt.
func decodeValue(id idcodec.ID, v []byte) (registry.Record, error) {
	if len(v) < valueHeader {
		return registry.Record{}, fmt.Errorf("%w: %s: %d-byte value", registry.ErrCorrupt, id, len(v))
	}
	if string(v[:8]) != string(id[:8]) {
		return registry.Record{}, errOtherID
	}
	elide := v[12]
	r, err := registry.DecodeRecord(id, v[valueHeader:])
	if err != nil {
		return registry.Record{}, err
	}
	if elide&elideIssued != 0 {
		r.IssuedAtMS = int64(id.Decompose().TimestampMS)
	}
	if elide&elidePending != 0 {
		r.History = append([]registry.Step{{State: registry.Pending, AtMS: r.IssuedAtMS, Actor: r.Subject}}, r.History...)
	}
	return r, nil
}

// Idempotency values: expiresAtMS[8] (CreatedMS + TTL, big endian, so the
// script can compare it with the caller's clock) then
// registry.IdemEntry.MarshalBinary.
func appendIdemValue(e *registry.IdemEntry, ttlMS int64) []byte {
	b, _ := e.MarshalBinary()
	out := make([]byte, 8, 8+len(b))
	binary.BigEndian.PutUint64(out, uint64(e.CreatedMS+ttlMS))
	return append(out, b...)
}

func decodeIdemValue(kh [32]byte, v []byte) (registry.IdemEntry, error) {
	if len(v) < 8 {
		return registry.IdemEntry{}, registry.ErrCorrupt
	}
	return registry.DecodeIdemEntry(kh, v[8:])
}

// hwValue is a fixed-width hex form, so that the script compares marks as
// strings (Lua numbers are doubles: counters above 2^53 would round).
func hwValue(v uint64) string { return fmt.Sprintf("%016x", v) }

// slot is the Redis Cluster slot of key: CRC16 (XMODEM) of its hash tag.
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) & 16383
}
