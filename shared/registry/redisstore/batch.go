package redisstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/registry"
)

type opKind uint8

const (
	opRegister opKind = iota + 1
	opCAS
	opRaise
)

// op is one unit of work of a group commit. The caller builds its values
// (so encoding runs in parallel, outside the flusher); the flusher sets the
// results and sends on done (buffered: one value, never waited for).
type op struct {
	kind opKind

	// opRegister: one entry per record of iss, and its deadlines.
	iss     registry.Issue
	keys    []string
	fields  []string
	vals    [][]byte
	dls     []deadline
	idemKey string
	idemVal []byte // nil without an idempotency entry
	idemTTL int64
	nowMS   int64

	// opCAS (and the bucket part of a void)
	key, field   string
	old, new     []byte
	ttl          int64
	zkey, member string
	state        registry.CounterState // the counter's byte in its state map after the write

	// opRaise
	hw string

	// Backing arrays of keys, fields and vals for the common one-record
	// registration (one allocation fewer each), and of the first values
	// of any registration: a batch's records of one millisecond share one
	// value, so a batch without metadata usually fits.
	key1, field1 [1]string
	val1         [1][]byte
	buf1         [64]byte
	// many holds keys, fields and vals of registrations of more records;
	// it stays with the op through the pool (Register clears vals first).
	many *manyArrays

	// Results.
	replay    []byte // the live idempotency value of another call
	collision int    // 1 + index of the record held by another value
	mismatch  bool   // opCAS: the field did not hold old
	err       error
	done      chan struct{}
}

// manyArrays are the arrays of a registration of more than one record.
type manyArrays struct {
	keys, fields []string
	vals         [][]byte
}

// maxKeptRecords bounds the records whose arrays a pooled op keeps.
const maxKeptRecords = 1024

type deadline struct {
	key    string
	score  int64
	member string
}

func (o *op) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// role says how a sub-operation's result is read.
type role uint8

const (
	roleWhole     role = iota // all of op (one script per batch: not Cluster)
	roleRecords               // Cluster phase 1: the op's records of one slot
	roleIdem                  // Cluster phase 2: the op's idempotency entry
	roleDeadlines             // Cluster phase 2: the op's deadlines of one slot
	roleCleanup               // rollbacks, voids, deferred ZREMs: logged only
)

type part struct {
	o    *op
	role role
	recs []int // the op's records in this sub-operation (roleRecords)
}

// call is one EVALSHA of batchScript.
type call struct {
	keys  []string
	index map[string]int
	args  []any
	parts []part
	// marks are the fields the call's registrations write: bit off of
	// marks[b] stands for the field off (0..127) of the bucket at KEYS
	// index b; seal turns them into 'M' runs.
	marks  []fieldSet
	sealed bool
	// join is the last sub-operation when it is an 'S' or a 'G' that a
	// next one-record registration may join (see single).
	join joinable
}

// joinable is an 'S' or 'G' sub-operation at the end of a call's
// arguments: it starts at args[at] (at > 0), names bucket index b and
// offsets lo..lo+n-1, all holding val.
type joinable struct {
	at, b, lo, n int
	val          []byte
}

// end is the index after the sub-operation's last argument: only the
// call's last sub-operation can take another record.
func (j *joinable) end() int {
	if j.n == 1 {
		return j.at + 4
	}
	return j.at + 5
}

// fieldSet is a set of a bucket's fields (offsets 0..127).
type fieldSet [2]uint64

// mark adds the field off of the bucket at KEYS index b to the call's
// marks.
func (c *call) mark(b, off int) {
	for len(c.marks) <= b {
		c.marks = append(c.marks, fieldSet{})
	}
	c.marks[b][off>>6] |= 1 << (off & 63)
}

// fieldOffset is the offset a bucket's field (decimal, 0..127) names.
func fieldOffset(f string) int {
	n := 0
	for i := 0; i < len(f); i++ {
		n = n*10 + int(f[i]-'0')
	}
	return n
}

// seal appends the state map runs of the call's registrations ('M': bucket
// index, first offset, length), each offset once, in order of bucket index
// and offset, after every sub-operation. It is called once, before the
// call is first sent.
func (c *call) seal() {
	if c.sealed {
		return
	}
	c.sealed = true
	for b, fs := range c.marks {
		for off := 0; off < 2*64; {
			w := fs[off>>6] >> (off & 63)
			if w == 0 {
				off = off&^63 + 64
				continue
			}
			off += bits.TrailingZeros64(w)
			lo := off
			for {
				// the run of set bits from off, up to the end of its word
				n := bits.TrailingZeros64(^(fs[off>>6] >> (off & 63)))
				off += n
				if n == 0 || off&63 != 0 || off == 2*64 {
					break
				}
			}
			if c.args[2] == 0 {
				c.args[2] = len(c.args) + 1 // 1-based, as ARGV
			}
			c.args = append(c.args, "M", b, lo, off-lo)
		}
	}
}

func newCall(durable bool, bucketTTL int64) *call {
	d := "0"
	if durable {
		d = "1"
	}
	// ARGV[3], the index of the first 'M', is set by seal.
	return &call{index: map[string]int{}, args: []any{d, bucketTTL, 0}}
}

// reset empties c for another flush, keeping its arrays; the
// references to the flush's ops and values go.
func (c *call) reset() {
	clear(c.keys)
	c.keys = c.keys[:0]
	clear(c.index)
	clear(c.args[3:])
	c.args = c.args[:3]
	c.args[2] = 0
	clear(c.parts)
	c.parts = c.parts[:0]
	c.marks = c.marks[:0] // mark appends zeroed sets
	c.sealed = false
	c.join = joinable{}
}

// maxKeptArgs bounds the arguments of the call flushSingle keeps.
const maxKeptArgs = 1 << 16

// key returns the 1-based KEYS index of k, adding it once.
func (c *call) key(k string) int {
	if i, ok := c.index[k]; ok {
		return i
	}
	c.keys = append(c.keys, k)
	c.index[k] = len(c.keys)
	return len(c.keys)
}

// bucket returns the 1-based KEYS index of the record bucket k, adding it
// once, followed by the key of its state map: the script finds a bucket's
// map at the next index.
func (c *call) bucket(k string) int {
	if i, ok := c.index[k]; ok {
		return i
	}
	c.keys = append(c.keys, k, stateKeyOf(k))
	c.index[k] = len(c.keys) - 1
	return len(c.keys) - 1
}

func (c *call) register(p part, idem bool, recs []int, dls []deadline) {
	o := p.o
	if len(recs) == 1 && len(dls) == 0 && (!idem || o.idemVal == nil) {
		i := recs[0]
		b, off := c.bucket(o.keys[i]), fieldOffset(o.fields[i])
		c.single(b, off, o.fields[i], o.vals[i])
		c.mark(b, off)
		c.parts = append(c.parts, p)
		return
	}
	ik, iv := 0, []byte(nil)
	if idem && o.idemVal != nil {
		ik, iv = c.key(o.idemKey), o.idemVal
	}
	c.args = append(c.args, "R", ik, iv, o.idemTTL, o.nowMS, 0)
	ng := len(c.args) - 1
	// Groups: runs of records in consecutive fields of one bucket with the
	// same value (bucket index, first offset, count, value).
	groups, n := 0, 0
	b, off := 0, 0
	for j, i := range recs {
		next := fieldOffset(o.fields[i])
		if j > 0 && o.keys[recs[j-1]] == o.keys[i] {
			// the bucket of the record before: its index is b
			c.mark(b, next)
			if off+1 == next && sameBytes(o.vals[recs[j-1]], o.vals[i]) {
				off, n = next, n+1
				c.args[len(c.args)-2] = n
				continue
			}
			off = next
		} else {
			b, off = c.bucket(o.keys[i]), next
			c.mark(b, off)
		}
		groups, n = groups+1, 1
		c.args = append(c.args, b, off, 1, o.vals[i])
	}
	c.args[ng] = groups
	c.args = append(c.args, len(dls))
	for _, d := range dls {
		c.args = append(c.args, c.key(d.key), d.score, d.member)
	}
	c.parts = append(c.parts, p)
}

// single adds a one-record registration without idempotency entry or
// deadline: an 'S' (bucket index, field, value), or, when the call's last
// sub-operation is an 'S' or a 'G' of the same bucket and value ending at
// the field before off, a 'G' of one more record (bucket index, first
// offset, count, value). Single IDs issued in one millisecond by one
// instance have consecutive counters and equal values (the value holds
// the ID's timestamp and worker, not its counter), so under load a flush
// holds them in a few 'G's, which the script stores as runs.
func (c *call) single(b, off int, field string, val []byte) {
	j := &c.join
	if j.at > 0 && j.end() == len(c.args) && j.b == b && j.lo+j.n == off && sameBytes(j.val, val) {
		if j.n++; j.n == 2 {
			// the 'S' at j.at becomes a 'G': its field turns into the
			// first offset and the count, its value moves one along
			c.args[j.at] = "G"
			c.args[j.at+2] = j.lo
			c.args[j.at+3] = 2
			c.args = append(c.args, j.val)
		} else {
			c.args[j.at+3] = j.n
		}
		return
	}
	*j = joinable{at: len(c.args), b: b, lo: off, n: 1, val: val}
	c.args = append(c.args, "S", b, field, val)
}

// joins reports whether o is a one-record registration without
// idempotency entry or deadline, which call.single may join to others.
func (o *op) joins() bool {
	return o.kind == opRegister && len(o.keys) == 1 && len(o.dls) == 0 && o.idemVal == nil
}

// byField orders one-record registrations by bucket key and field offset.
func byField(a, b *op) int {
	if a.keys[0] != b.keys[0] {
		return strings.Compare(a.keys[0], b.keys[0])
	}
	return cmp.Compare(fieldOffset(a.fields[0]), fieldOffset(b.fields[0]))
}

// sameBytes reports whether a and b hold the same bytes: at once when they
// are the same slice (Register shares one value among a batch's records).
func sameBytes(a, b []byte) bool {
	if len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0]) {
		return true
	}
	return bytes.Equal(a, b)
}

// cas adds a compare-and-set; key "" skips the hash part, zkey "" the ZREM.
// state is the counter's byte in the bucket's state map once the field
// holds new: registry.StateOf of the record new encodes, CounterFree for a
// delete.
func (c *call) cas(p part, key, field string, old, new []byte, ttl int64, zkey, member string, state registry.CounterState) {
	k, zk := 0, 0
	if key != "" {
		k = c.bucket(key)
	}
	if zkey != "" {
		zk = c.key(zkey)
	}
	c.args = append(c.args, "C", k, field, old, new, ttl, zk, member, uint8(state))
	c.parts = append(c.parts, p)
}

func (c *call) raise(p part, key, v string) {
	c.args = append(c.args, "H", c.key(key), v)
	c.parts = append(c.parts, p)
}

type result struct {
	vals []any
	err  error
}

// maxFlushRecords bounds the records of one flush (a soft bound: the op
// that crosses it rides along), so that one script never blocks Redis long.
const maxFlushRecords = 8192

// flush sends batch and answers every op of it. Each stretch of
// consecutive one-record registrations (see call.single) goes in the
// order of bucket and field, so that single IDs of one millisecond join
// into runs in whatever order their requests were queued. That changes
// no answer: such registrations of different counters do not meet, and
// those of one counter keep their order (a stable sort); every other op
// keeps its place.
func (s *Store) flush(batch []*op) {
	t0 := time.Now()
	ordered := append(s.ordered[:0], batch...)
	for i := 0; i < len(ordered); {
		j := i
		for j < len(ordered) && ordered[j].joins() {
			j++
		}
		if j-i > 1 {
			slices.SortStableFunc(ordered[i:j], byField)
		}
		i = max(j, i+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FlushTimeout+3*s.waitTimeout())
	defer cancel()
	if s.cluster {
		s.flushCluster(ctx, ordered)
	} else {
		s.flushSingle(ctx, ordered)
	}
	clear(ordered)
	s.ordered = ordered[:0]
	s.stats.batches.Add(1)
	s.stats.ops.Add(uint64(len(batch)))
	for _, o := range batch {
		if o.err == nil && o.collision > 0 {
			id := o.iss.Records[o.collision-1].ID
			s.stats.collisions.Add(1)
			s.cfg.Logger.Error("registry collision: id held by another writer", zap.Stringer("id", id))
			if s.cfg.Collision != nil {
				s.cfg.Collision(id)
			}
			o.err = fmt.Errorf("%w: %s", registry.ErrCollision, id)
		}
		if o.err == nil && o.replay != nil {
			s.stats.replays.Add(1)
		}
		o.done <- struct{}{}
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(len(batch), time.Since(t0))
	}
}

// flushSingle sends the whole batch as one script call. When the script
// fails with an error reply (a key of the wrong type, say), the ops before
// the failing one are already written and the rest are not: every op is
// then resent in a call of its own (one more round trip), so that only the
// op at fault fails. Resending is safe: what is already written finds its
// own value.
//
// The whole batch's call is the flusher's own, kept for the next flush.
func (s *Store) flushSingle(ctx context.Context, batch []*op) {
	c := s.single
	if c == nil {
		c = s.newCall()
	}
	defer func() {
		if s.single = nil; cap(c.args) <= maxKeptArgs {
			c.reset()
			s.single = c
		}
	}()
	for _, o := range batch {
		s.addWhole(c, o)
	}
	r := s.exec(ctx, []*call{c})[0]
	var rerr redis.Error
	if r.err == nil || len(batch) == 1 || !errors.As(r.err, &rerr) || serverWide(r.err) {
		s.read(c, r)
		return
	}
	s.cfg.Logger.Warn("registry batch script failed; resending its operations one by one", zap.Error(r.err))
	calls := make([]*call, len(batch))
	for i, o := range batch {
		calls[i] = s.newCall()
		s.addWhole(calls[i], o)
	}
	for i, r := range s.exec(ctx, calls) {
		s.read(calls[i], r)
	}
}

func (s *Store) addWhole(c *call, o *op) {
	switch o.kind {
	case opRegister:
		s.whole = s.whole[:0]
		for i := range o.keys {
			s.whole = append(s.whole, i)
		}
		c.register(part{o: o, role: roleWhole}, true, s.whole, o.dls)
	case opCAS:
		c.cas(part{o: o, role: roleWhole}, o.key, o.field, o.old, o.new, o.ttl, o.zkey, o.member, o.state)
	case opRaise:
		c.raise(part{o: o, role: roleWhole}, s.highWaterKey(), o.hw)
	}
}

func (s *Store) newCall() *call {
	return newCall(s.cfg.WaitReplicas > 0, s.cfg.Retention.Milliseconds())
}

func (s *Store) waitTimeout() time.Duration {
	if s.cfg.WaitReplicas > 0 {
		return s.cfg.WaitTimeout
	}
	return 0
}

// read hands the per-sub-operation results of c to their ops.
func (s *Store) read(c *call, r result) {
	for i, p := range c.parts {
		var v any
		err := r.err
		if err == nil {
			if i < len(r.vals) {
				v = r.vals[i]
			} else {
				err = fmt.Errorf("%w: script returned %d results for %d operations", registry.ErrUnavailable, len(r.vals), len(c.parts))
			}
		}
		if p.role == roleCleanup {
			if err != nil {
				s.cfg.Logger.Warn("registry clean-up failed", zap.Error(err))
			}
			continue
		}
		if err != nil {
			p.o.fail(err)
			continue
		}
		switch v := v.(type) {
		case string:
			if p.role == roleWhole || p.role == roleIdem {
				p.o.replay = []byte(v)
			} else {
				p.o.fail(fmt.Errorf("%w: unexpected script result", registry.ErrUnavailable))
			}
		case int64:
			switch {
			case v == -1:
				p.o.mismatch = true
			case v > 0 && p.o.collision == 0:
				if p.recs != nil {
					p.o.collision = p.recs[v-1] + 1
				} else {
					p.o.collision = int(v)
				}
			}
		default:
			p.o.fail(fmt.Errorf("%w: unexpected script result %T", registry.ErrUnavailable, v))
		}
	}
}

// exec sends calls in one round trip (one per node, concurrently, in
// Cluster mode) and, in durable mode, WAITs on each connection that wrote.
func (s *Store) exec(ctx context.Context, calls []*call) []result {
	res := make([]result, len(calls))
	if len(calls) == 0 {
		return res
	}
	for _, c := range calls {
		c.seal()
	}
	s.stats.roundTrips.Add(1)
	if !s.cluster || s.cfg.WaitReplicas == 0 {
		s.pipeline(ctx, s.client, calls, res)
		return res
	}
	// WAIT counts the replicas of the node it runs on, for the writes of
	// its own connection: one pipeline per master, each ending with WAIT.
	cc := s.client.(*redis.ClusterClient)
	groups := map[*redis.Client][]int{}
	for i, c := range calls {
		node, err := cc.MasterForKey(ctx, c.keys[0])
		if err != nil {
			res[i].err = fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
			continue
		}
		groups[node] = append(groups[node], i)
	}
	var wg sync.WaitGroup
	for node, idx := range groups {
		wg.Go(func() {
			sub := make([]*call, len(idx))
			for j, i := range idx {
				sub[j] = calls[i]
			}
			subres := make([]result, len(idx))
			s.pipeline(ctx, node, sub, subres)
			for j, i := range idx {
				res[i] = subres[j]
				if res[i].err != nil && (redis.HasErrorPrefix(res[i].err, "MOVED") || redis.HasErrorPrefix(res[i].err, "ASK")) {
					cc.ReloadState(ctx)
				}
			}
		})
	}
	wg.Wait()
	return res
}

// pipeline runs calls on c in one pipeline: on a *redis.Client that is one
// connection, so the WAIT that ends it covers exactly these writes. A
// NOSCRIPT (a restarted or promoted server) loads the script and resends
// the pipeline once: every sub-operation is idempotent (a value equal to the
// one to write counts as written).
func (s *Store) pipeline(ctx context.Context, c redis.Cmdable, calls []*call, res []result) {
	wait := 0
	if s.cfg.WaitReplicas > 0 {
		wait = s.cfg.WaitReplicas
	}
	for attempt := 0; ; attempt++ {
		pipe := c.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, cl := range calls {
			cmds[i] = pipe.EvalSha(ctx, batchScript.Hash(), cl.keys, cl.args...)
		}
		var w *redis.Cmd
		if wait > 0 {
			w = pipe.Do(ctx, "WAIT", wait, s.cfg.WaitTimeout.Milliseconds())
		}
		_, _ = pipe.Exec(ctx)
		if attempt == 0 {
			noscript := false
			for _, cmd := range cmds {
				noscript = noscript || redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT")
			}
			if noscript {
				if err := c.ScriptLoad(ctx, batchSource).Err(); err == nil {
					continue
				}
			}
		}
		var werr error
		if w != nil {
			n, err := w.Int64()
			if err == nil {
				s.stats.replicasAcked.Store(n)
			}
			switch {
			case err != nil:
				werr = fmt.Errorf("%w: wait: %w", registry.ErrUnavailable, err)
			case n < int64(wait):
				s.stats.waitFailures.Add(1)
				werr = fmt.Errorf("%w: %d of %d replicas acknowledged within %v", registry.ErrUnavailable, n, wait, s.cfg.WaitTimeout)
			}
		}
		for i, cmd := range cmds {
			v, err := cmd.Slice()
			switch {
			case err != nil:
				res[i].err = fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
			case werr != nil:
				res[i].err = werr
			default:
				res[i].vals = v
			}
		}
		return
	}
}

// serverWide reports an error reply about the server rather than one
// operation (no replicas, read-only replica, out of memory, loading, master
// down): resending operation by operation would fail the same way, slower.
func serverWide(err error) bool {
	for _, p := range []string{"NOREPLICAS", "READONLY", "OOM", "LOADING", "MASTERDOWN", "BUSY", "CLUSTERDOWN", "TRYAGAIN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
