package redise2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/registry/redisstore/redisstoretest"
	"github.com/idgen/idgen/tests/internal/idgenapi"
)

// TestTwoInstancesShareRegistry: 100k IDs from two instances sharing one
// standalone Redis, in single and count=1000 requests. No (shard, counter)
// twice; every ID held by Redis under its own value; a sample readable
// through GET /ids on the instance that did not issue it; at most 64 bytes
// of Redis memory per ID.
func TestTwoInstancesShareRegistry(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{})
	insts := d.startTwo()
	admin := rawClient(t, srv.Addr(), redisOpts{})
	before := usedMemory(t, admin)

	const (
		batches = 90     // × 1000
		singles = 10_000 // × 1
		total   = batches*1000 + singles
		workers = 16
	)
	jobs := make(chan int, batches+singles)
	for _, n := range idgenapi.MixedCounts(batches, singles) {
		jobs <- n
	}
	close(jobs)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newLedger()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
	)
	t0 := time.Now()
	for w := range workers {
		wg.Go(func() {
			i := w
			for n := range jobs {
				if ctx.Err() != nil {
					return
				}
				r := generate(ctx, d.client, insts[i%2], i%2, n, genOpts{})
				i++
				if !l.add(r) {
					errOnce.Do(func() { t.Errorf("unexpected answer: %s", r.String()) })
					cancel()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if t.Failed() {
		t.Fatalf("answers: %s", l.summary())
	}
	l.checkUnique(t)
	ids, from, _ := l.snapshot()
	if len(ids) != total {
		t.Fatalf("%d IDs returned, want %d (%s)", len(ids), total, l.summary())
	}
	after := usedMemory(t, admin)
	t.Logf("%d IDs in %v (%.0f IDs/s) from 2 instances; answers: %s", len(ids), elapsed.Round(time.Millisecond), float64(len(ids))/elapsed.Seconds(), l.summary())

	// The instances hold different worker slots.
	workersOf := map[int]map[uint16]bool{0: {}, 1: {}}
	for i, id := range ids {
		workersOf[from[i]][id.Decompose().Worker] = true
	}
	for w := range workersOf[0] {
		if workersOf[1][w] {
			t.Errorf("both instances stamped worker %d", w)
		}
	}

	// Every ID is in Redis, under its own value.
	checkRegistered(t, admin, ids, "IDs returned")

	// The other instance finds a sample through the API; the registry's
	// own decoder reads them as pending records of the dev subject.
	store := redisstoretest.Open(t, redisstore.Config{Addrs: []string{srv.Addr()}})
	for i, j := range sampleIdx(len(ids), 400) {
		id, other := ids[j], 1-from[j]
		status, v, err := getID(ctx, d.client, insts[other], id)
		if err != nil || status != http.StatusOK || v.ID != id.String() || v.State != "pending" || v.Counter != id.Decompose().Counter {
			t.Errorf("GET /ids/%s on %s: %d %+v %v", id, insts[other].name, status, v, err)
			break
		}
		if i%4 == 0 {
			rec, err := store.Get(ctx, id)
			if err != nil || rec.ID != id || rec.State != registry.Pending || rec.Subject != "dev" {
				t.Errorf("redisstore Get %s: %+v %v", id, rec, err)
				break
			}
		}
	}

	per := float64(after-before) / float64(len(ids))
	enc := admin.ObjectEncoding(ctx, firstBucket(ids)).Val()
	t.Logf("Redis used_memory %d → %d: +%d bytes for %d IDs = %.1f bytes/ID (bucket encoding %s)", before, after, after-before, len(ids), per, enc)
	if per > 64 {
		t.Errorf("%.1f bytes of Redis memory per ID, want at most 64", per)
	}
}

func firstBucket(ids []idcodec.ID) string {
	k, _ := bucketOf(ids[len(ids)/2])
	return k
}

// TestIdempotencyAcrossInstances: 32 concurrent POST /generate with one
// Idempotency-Key, split over two instances, yield one answer: one distinct
// ID set, 31 answers marked Idempotent-Replayed. Repeated with a batch body;
// the same key with another body is 422.
func TestIdempotencyAcrossInstances(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{})
	insts := d.startTwo()
	admin := rawClient(t, srv.Addr(), redisOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const concurrent = 32
	rounds := []struct {
		name  string
		count int
	}{{"single", 0}, {"count=5", 5}, {"single again", 0}}
	for ri, round := range rounds {
		key := strings.NewReplacer(" ", "_", "=", "_", ".", "_").Replace("idem-" + round.name + "-" + time.Now().Format("150405.000000"))
		results := generateAtOnce(ctx, d.client, insts, concurrent, round.count, key)

		distinct := map[string]bool{}
		replayed, firsts := 0, 0
		var winner genResult
		for _, r := range results {
			if r.status != http.StatusOK || r.bad != "" || r.err != nil {
				t.Errorf("%s: %s", round.name, r.String())
				continue
			}
			distinct[idSet(r.ids)] = true
			if r.replayed {
				replayed++
			} else {
				firsts++
				winner = r
			}
		}
		t.Logf("%s: %d answers, %d distinct ID sets, %d replayed, %d first", round.name, concurrent, len(distinct), replayed, firsts)
		if len(distinct) != 1 || replayed != concurrent-1 || firsts != 1 {
			t.Errorf("%s: %d distinct ID sets, %d replayed, %d not replayed; want 1, %d, 1", round.name, len(distinct), replayed, firsts, concurrent-1)
			continue
		}
		checkRegistered(t, admin, winner.ids, "idempotent IDs")
		for i, in := range insts {
			if status, v, err := getID(ctx, d.client, in, winner.ids[0]); err != nil || status != http.StatusOK || v.State != "pending" {
				t.Errorf("%s: GET /ids/%s on instance %d: %d %+v %v", round.name, winner.ids[0], i, status, v, err)
			}
		}
		if ri == 0 {
			// Same key, another body: 422 on either instance.
			for i, in := range insts {
				r := generate(ctx, d.client, in, i, 2, genOpts{idemKey: key})
				if r.status != http.StatusUnprocessableEntity {
					t.Errorf("same Idempotency-Key with another body on instance %d: %s, want 422", i, r.String())
				}
			}
		}
	}
}

// counterNext reads the shard-0 counter znode under root: the first counter
// ZooKeeper has not handed out (0 before the first claim).
func counterNext(t testing.TB, servers, root string) uint64 {
	t.Helper()
	c, _, err := zk.Connect(strings.Split(servers, ","), 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _, err := c.Get(root + "/shards/0/counter")
	if errors.Is(err, zk.ErrNoNode) {
		return 0
	}
	if err != nil {
		t.Fatalf("read counter znode: %v", err)
	}
	var v struct {
		Next uint64 `json:"next"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("counter znode %q: %v", b, err)
	}
	return v.Next
}

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

// foreignValue is a registry value of another writer for counter: another
// ID's high half (year 2001, worker 4095), another nonce, a valid record.
func foreignValue(counter uint64) []byte {
	other := idcodec.MustCompose(idcodec.Fields{TimestampMS: 1_000_000_000_000, Worker: 4095, Shard: 0, Counter: counter})
	rec := registry.Record{
		ID: other, State: registry.Pending, Subject: "foreign-writer",
		History: []registry.Step{{State: registry.Pending, AtMS: 1_000_000_000_000, Actor: "foreign-writer"}},
	}
	v := append([]byte(nil), other[:8]...)
	v = binary.BigEndian.AppendUint32(v, 0xdeadbeef)
	v = append(v, 0) // nothing elided
	return rec.AppendBinary(v)
}

// TestCollisionInjection: bucket fields of the counters the instance will
// hand out first are pre-seeded with another writer's values. The client
// never receives an ID whose counter was pre-seeded, the foreign values are
// never overwritten, every ID answered is registered under its own value,
// and /metrics counts the collisions.
func TestCollisionInjection(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{})
	admin := rawClient(t, srv.Addr(), redisOpts{})
	adoptRegistry(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Before the instance starts: its first range begins at next.
	next := counterNext(t, d.zk, d.root)
	// Runs of at most 3 consecutive counters (a request retries a colliding
	// batch 3 times: a longer run is TestCollisionRunLongerThanRetryBudget),
	// bucket boundaries (127/128), and beyond the first range counters more
	// than 2000 apart, so that batches of 1000 collide but never 4 in a row.
	offsets := []uint64{0, 1, 2, 5, 40, 41, 127, 128, 500, 999, 1000, 3100, 5200, 7300, 9400}
	seeded := map[uint64][]byte{}
	for _, o := range offsets {
		c := next + o
		k, f := bucketOf(idcodec.MustCompose(idcodec.Fields{TimestampMS: 1, Shard: 0, Counter: c}))
		v := foreignValue(c)
		if err := admin.HSet(ctx, k, f, v).Err(); err != nil {
			t.Fatal(err)
		}
		seeded[c] = v
	}
	t.Logf("counter znode next=%d; pre-seeded %d bucket fields from there", next, len(seeded))

	a := d.start("idgen-a", nil)
	l := newLedger()
	var answered []genResult
	ask := func(count int) {
		r := generate(ctx, d.client, a, 0, count, genOpts{})
		l.add(r)
		answered = append(answered, r)
	}
	for range 30 {
		ask(0)
	}
	for range 8 {
		ask(1000)
	}
	for range 30 {
		ask(0)
	}
	t.Logf("answers: %s", l.summary())
	for _, r := range answered {
		if r.status != http.StatusOK && !is503(&r) {
			t.Errorf("answer outside the contract (200, or 503 with Retry-After): %s", r.String())
		}
	}
	l.checkUnique(t)
	ids, _, _ := l.snapshot()
	for _, id := range ids {
		if _, ok := seeded[id.Decompose().Counter]; ok {
			t.Errorf("client received %s, whose counter %d was held by another writer", id, id.Decompose().Counter)
		}
	}
	checkRegistered(t, admin, ids, "IDs answered")
	for c, v := range seeded {
		k, f := bucketOf(idcodec.MustCompose(idcodec.Fields{TimestampMS: 1, Shard: 0, Counter: c}))
		got, err := admin.HGet(ctx, k, f).Bytes()
		if err != nil || !bytes.Equal(got, v) {
			t.Errorf("pre-seeded counter %d: field now %x (%v), want the foreign value untouched", c, got, err)
		}
	}
	n, err := metric(ctx, d.client, a, "idgen_registry_collisions_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idgen_registry_collisions_total = %v; %d IDs answered", n, len(ids))
	if n <= 0 {
		t.Errorf("idgen_registry_collisions_total = %v, want > 0", n)
	}
	if len(ids) < 60 {
		t.Errorf("only %d IDs answered", len(ids))
	}
}

// TestCollisionRunLongerThanRetryBudget: a run of 32 pre-seeded counters
// (what a ZooKeeper restored from an old snapshot, or a second deployment
// writing the same shard, leaves in the registry) is longer than the 3
// retries one request makes. The requests that exhaust their retries must
// still get the contract's retryable refusal (503 with Retry-After), never
// a 500, and the service must get past the run.
func TestCollisionRunLongerThanRetryBudget(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{})
	admin := rawClient(t, srv.Addr(), redisOpts{})
	adoptRegistry(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	next := counterNext(t, d.zk, d.root)
	const run = 32
	for c := next; c < next+run; c++ {
		k, f := bucketOf(idcodec.MustCompose(idcodec.Fields{TimestampMS: 1, Shard: 0, Counter: c}))
		if err := admin.HSet(ctx, k, f, foreignValue(c)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	a := d.start("idgen-a", nil)
	l := newLedger()
	oks := 0
	for i := 0; i < 3*run && oks < 5; i++ {
		r := generate(ctx, d.client, a, 0, 0, genOpts{})
		l.add(r)
		switch {
		case r.status == http.StatusOK && r.bad == "":
			oks++
			if c := r.ids[0].Decompose().Counter; c < next+run {
				t.Errorf("client received %s with pre-seeded counter %d", r.ids[0], c)
			}
		case !is503(&r):
			t.Errorf("request %d: %s; want 200, or 503 unavailable with Retry-After", i, r.String())
		}
	}
	t.Logf("answers: %s", l.summary())
	if oks < 5 {
		t.Errorf("the service did not get past a run of %d foreign counters", run)
	}
	ids, _, _ := l.snapshot()
	checkRegistered(t, admin, ids, "IDs answered")
}

// TestMetadataSealedAtRest: metadata given to /generate is never stored in
// plaintext: not in any Redis key or value (DUMP and the typed read of every
// key), not in the append-only file on disk; the other instance, sharing
// the key file, returns it.
func TestMetadataSealedAtRest(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{AppendFsyncAlways: true})
	insts := d.startTwo()
	admin := rawClient(t, srv.Addr(), redisOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const secret = "4111111111111111"
	meta := `{"card":"` + secret + `"}`
	var ids []idcodec.ID
	for _, o := range []genOpts{
		{body: `{"metadata":` + meta + `}`},
		{body: `{"metadata":` + meta + `,"timeout_ms":600000}`, idemKey: "meta-1"},
		{body: `{"count":3,"metadata":` + meta + `}`},
	} {
		count := 0
		if strings.Contains(o.body, "count") {
			count = 3
		}
		r := generate(ctx, d.client, insts[0], 0, count, o)
		if r.status != http.StatusOK || r.bad != "" {
			t.Fatalf("POST /generate %s: %s", o.body, r.String())
		}
		ids = append(ids, r.ids...)
	}

	// The other instance opens it.
	for _, id := range ids {
		status, v, err := getID(ctx, d.client, insts[1], id)
		if err != nil || status != http.StatusOK {
			t.Fatalf("GET /ids/%s on %s: %d %v", id, insts[1].name, status, err)
		}
		var got, want any
		_ = json.Unmarshal([]byte(meta), &want)
		if err := json.Unmarshal(v.Metadata, &got); err != nil || !jsonEqual(got, want) {
			t.Errorf("GET /ids/%s on %s: metadata %s, want %s", id, insts[1].name, v.Metadata, meta)
		}
	}

	// Every key, as Redis holds it.
	keys, err := admin.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var (
		scanned  int
		sealedOK bool
	)
	for _, k := range keys {
		var blobs [][]byte
		dump, err := admin.Dump(ctx, k).Result()
		if err != nil {
			t.Fatalf("DUMP %s: %v", k, err)
		}
		blobs = append(blobs, []byte(k), []byte(dump))
		switch typ := admin.Type(ctx, k).Val(); typ {
		case "hash":
			m, err := admin.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range m {
				blobs = append(blobs, []byte(f), []byte(v))
			}
		case "string":
			v, _ := admin.Get(ctx, k).Bytes()
			blobs = append(blobs, v)
		case "zset":
			ms, _ := admin.ZRange(ctx, k, 0, -1).Result()
			for _, m := range ms {
				blobs = append(blobs, []byte(m))
			}
		default:
			t.Errorf("unexpected key %s of type %s", k, typ)
		}
		for _, b := range blobs {
			scanned += len(b)
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("Redis key %s holds the metadata in plaintext", k)
			}
		}
	}
	// The records carry sealed metadata (so the test looked at the right
	// place).
	store := redisstoretest.Open(t, redisstore.Config{Addrs: []string{srv.Addr()}})
	for _, id := range ids {
		rec, err := store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Metadata) < len(meta) || bytes.Contains(rec.Metadata, []byte(secret)) {
			t.Errorf("record of %s: metadata %q, want sealed", id, rec.Metadata)
		}
		sealedOK = true
	}

	// The append-only file on disk.
	files := 0
	err = filepath.WalkDir(srv.Dir(), func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() == "server.log" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		scanned += len(b)
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s (Redis persistence on disk) holds the metadata in plaintext", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d keys and %d persistence files scanned (%d bytes): no plaintext; sealed records found: %v", len(keys), files, scanned, sealedOK)
	for _, in := range insts {
		if strings.Contains(in.p.Stderr(), secret) {
			t.Errorf("%s logged the metadata in plaintext", in.name)
		}
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// adoptRegistry writes the epoch marker an operator writes with `idgen
// registry reset-epoch`: a registry that holds records (the fields the test
// seeds next) but no marker is otherwise refused as one that lost its own.
func adoptRegistry(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := redisstore.ResetEpoch(ctx, redisstore.Config{Addrs: []string{addr}}); err != nil {
		t.Fatal(err)
	}
}
