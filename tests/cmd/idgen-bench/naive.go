package main

// The naive design, built here as the strawman idgen is measured against:
// every request claims one counter value from ZooKeeper with a versioned
// compare-and-set on a counter znode (read, setData(value+1, version),
// retry on a version conflict) and registers the new ID in Redis with a
// SETNX. It is correct (a value is used only after its compare-and-set
// succeeded, so no two requests share one) but pays two remote round trips
// per ID, one of them a quorum write that every request of every instance
// contends for.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/shared/idcodec"
)

// naiveConfig configures a naive server. The zero value of Path and Timeout
// means the defaults.
type naiveConfig struct {
	// Path is the counter znode. Default "/naive/counter".
	Path string
	// Timeout bounds one request (all its retries). Default naiveTimeout.
	Timeout time.Duration
}

// naiveTimeout is the default bound of one strawman request; past it the
// request answers 503.
const naiveTimeout = 5 * time.Second

// naive is the strawman's handler and its counters.
type naive struct {
	cfg       naiveConfig
	zk        *zk.Conn
	rdb       *redis.Client
	issued    atomic.Uint64
	conflicts atomic.Uint64 // failed compare-and-sets (each a ZooKeeper write)
	setnx     atomic.Uint64 // Redis round trips
}

// errNaiveCollision means the SETNX found the ID already registered: the
// counter was handed out twice, which the compare-and-set rules out.
var errNaiveCollision = errors.New("naive: ID already registered")

// newNaive creates the counter znode (and its parents) when missing.
func newNaive(conn *zk.Conn, rdb *redis.Client, cfg naiveConfig) (*naive, error) {
	if cfg.Path == "" {
		cfg.Path = "/naive/counter"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = naiveTimeout
	}
	parts := strings.Split(strings.TrimPrefix(cfg.Path, "/"), "/")
	for i := range parts {
		p := "/" + strings.Join(parts[:i+1], "/")
		data := []byte{}
		if i == len(parts)-1 {
			data = []byte("0")
		}
		if _, err := conn.Create(p, data, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return nil, fmt.Errorf("naive: create %s: %w", p, err)
		}
	}
	return &naive{cfg: cfg, zk: conn, rdb: rdb}, nil
}

// next claims one counter value: the znode holds the next free value.
func (n *naive) next(ctx context.Context) (uint64, error) {
	for {
		data, st, err := n.zk.Get(n.cfg.Path)
		if err != nil {
			return 0, fmt.Errorf("naive: read counter: %w", err)
		}
		v, err := strconv.ParseUint(string(data), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("naive: counter %q: %w", data, err)
		}
		_, err = n.zk.Set(n.cfg.Path, strconv.AppendUint(nil, v+1, 10), st.Version)
		switch {
		case err == nil:
			return v, nil
		case errors.Is(err, zk.ErrBadVersion):
			n.conflicts.Add(1)
			if ctx.Err() != nil {
				return 0, fmt.Errorf("naive: counter contended: %w", ctx.Err())
			}
		default: // a lost reply included: the value is never used
			return 0, fmt.Errorf("naive: write counter: %w", err)
		}
	}
}

// issue returns one registered ID.
func (n *naive) issue(ctx context.Context) (idcodec.ID, error) {
	v, err := n.next(ctx)
	if err != nil {
		return idcodec.ID{}, err
	}
	id, err := idcodec.Compose(idcodec.Fields{TimestampMS: uint64(time.Now().UnixMilli()), Counter: v})
	if err != nil {
		return idcodec.ID{}, err
	}
	n.setnx.Add(1)
	ok, err := n.rdb.SetNX(ctx, naiveKey(id), "pending", 0).Result()
	switch {
	case err != nil:
		return idcodec.ID{}, fmt.Errorf("naive: register: %w", err)
	case !ok:
		return idcodec.ID{}, fmt.Errorf("%w: %s", errNaiveCollision, id)
	}
	n.issued.Add(1)
	return id, nil
}

func naiveKey(id idcodec.ID) string { return "naive:" + id.String() }

// handle serves POST /generate ({"id": ...}) and GET /metrics, which uses
// idgen's metric names so the bench reads both servers alike.
func (n *naive) handle(c *fasthttp.RequestCtx) {
	switch string(c.Path()) {
	case "/generate":
		if !c.IsPost() {
			c.Error(`{"error":{"code":"method_not_allowed","message":"POST only"}}`, fasthttp.StatusMethodNotAllowed)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
		defer cancel()
		id, err := n.issue(ctx)
		c.SetContentType("application/json")
		if err != nil {
			c.SetStatusCode(fasthttp.StatusServiceUnavailable)
			c.SetBodyString(`{"error":{"code":"unavailable","message":"no ID issued"}}`)
			return
		}
		c.SetBodyString(`{"id":"` + id.String() + `"}`)
	case "/metrics":
		c.SetContentType("text/plain; version=0.0.4")
		fmt.Fprintf(c, "idgen_ids_issued_total %d\nidgen_zookeeper_cas_conflicts_total %d\nidgen_registry_batch_size_count %d\nidgen_range_claims_total %d\n",
			n.issued.Load(), n.conflicts.Load(), n.setnx.Load(), n.issued.Load())
	default:
		c.Error(`{"error":{"code":"not_found","message":"no such path"}}`, fasthttp.StatusNotFound)
	}
}

type discardZKLog struct{}

func (discardZKLog) Printf(string, ...any) {}

// dialNaive connects to ZooKeeper and Redis and returns the strawman with a
// close function.
func dialNaive(ctx context.Context, zkServers, redisAddr string, cfg naiveConfig) (*naive, func(), error) {
	conn, _, err := zk.Connect(strings.Split(zkServers, ","), 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(discardZKLog{}))
	if err != nil {
		return nil, nil, fmt.Errorf("naive: zookeeper: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	closeAll := func() { conn.Close(); _ = rdb.Close() }
	if err := rdb.Ping(ctx).Err(); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("naive: redis: %w", err)
	}
	n, err := newNaive(conn, rdb, cfg)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return n, closeAll, nil
}

// serveNaive is the child process `idgen-bench naive <addr> <zk> <redis>`.
func serveNaive(addr, zkServers, redisAddr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	n, closeFn, err := dialNaive(ctx, zkServers, redisAddr, naiveConfig{})
	cancel()
	if err != nil {
		return err
	}
	defer closeFn()
	srv := &fasthttp.Server{Handler: n.handle, Name: "naive"}
	return srv.ListenAndServe(addr)
}
