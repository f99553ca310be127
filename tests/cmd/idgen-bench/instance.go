package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/tests/internal/idgenproc"
)

// instance is one HTTP server under test: how to start it, and what it
// leans on (Redis servers, ZooKeeper) so a run counts their work.
type instance struct {
	key, name string
	// argv is the command line for a listen address and a fresh data
	// directory; argv[0] is the program.
	argv    func(listen, dataDir string) []string
	metrics bool                   // serves Prometheus /metrics
	zk      bool                   // coordinates through the ZooKeeper server
	redis   []*redisharness.Server // its registry: primary first, then replicas
	rdb     *redis.Client          // INFO of redis[0]
	batch   bool                   // also measured with count=1000
	pprof   bool                   // started with --pprof-listen
	cold    bool                   // cold start measured
	// refuses marks the strawman, whose requests answer 503 when they fail
	// within their timeout (under load: by losing the counter's
	// compare-and-set to the other connections until then). Those answers
	// are counted and reported (they are part of what the design costs),
	// and its requests/s counts issued IDs only. For every other instance
	// a non-2xx answer fails the bench.
	refuses bool
	// tls, when set, is the client side of an HTTPS listener (it trusts
	// the listener's CA); bearer, when set, is the token every request
	// carries (wrk -H, the first-ID probe).
	tls    *tls.Config
	bearer string

	addr, pprofAddr string
	proc            *proc.Process
}

func (in *instance) url(path string) string { return in.scheme() + "://" + in.addr + path }

func (in *instance) scheme() string {
	if in.tls != nil {
		return "https"
	}
	return "http"
}

// headers are the request headers every request to in needs ("Name:
// value", as wrk -H takes them).
func (in *instance) headers() []string {
	if in.bearer == "" {
		return nil
	}
	return []string{"Authorization: Bearer " + in.bearer}
}

func (in *instance) redisPids() []int {
	var pids []int
	for _, s := range in.redis {
		if p := s.Pid(); p != 0 {
			pids = append(pids, p)
		}
	}
	return pids
}

// launch starts in and returns once POST /generate answered 200 (the
// first ID), with the time that took from the exec. A child that loses its
// port to another process is started again on a fresh one (idgenproc).
func launch(ctx context.Context, in *instance, dataDir string) (p *proc.Process, addr string, firstID time.Duration, err error) {
	c, err := idgenproc.Launch(ctx, idgenproc.Options{
		Name:    in.name,
		Args:    in.argv,
		DataDir: func() string { return dataDir },
		Scheme:  in.scheme(),
		Ready: func(ctx context.Context, p *proc.Process, url string) error {
			return waitFirstID(ctx, p, url+"/generate", in.tls, in.headers())
		},
	})
	if err != nil {
		return nil, "", 0, err
	}
	return c.Proc, c.Addr, c.Took, nil
}

// waitFirstID polls url with POST every millisecond until a 200, the
// child's exit, ctx's end or 60 s; tlsCfg (may be nil) is the client's TLS
// configuration, headers are "Name: value" lines.
func waitFirstID(ctx context.Context, p *proc.Process, url string, tlsCfg *tls.Config, headers []string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsCfg}}
	defer client.CloseIdleConnections()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
		if err != nil {
			return err
		}
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header.Set(k, strings.TrimSpace(v))
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("answered %s", resp.Status)
		}
		last = err
		select {
		case <-p.Done():
			return fmt.Errorf("%w before the first ID: %s", proc.ErrExited, tailString(p.Stderr(), 1500))
		case <-ctx.Done():
			return fmt.Errorf("no ID from %s: %w (last: %v)", url, ctx.Err(), last)
		case <-time.After(time.Millisecond):
		}
	}
}

// stop ends a child gracefully (SIGTERM: idgen drains and flushes), then
// by SIGKILL.
func stop(p *proc.Process) {
	if _, err := p.Terminate(20 * time.Second); errors.Is(err, proc.ErrTimeout) {
		_ = p.Kill()
	}
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// coldStarts measures, for every instance marked cold, the time from exec
// to its first ID on a fresh data directory, rounds times, alternating.
func coldStarts(ctx context.Context, insts []*instance, rounds int, dir string) ([]coldResult, error) {
	times := map[string][]float64{}
	for r := range rounds {
		for _, in := range insts {
			if !in.cold {
				continue
			}
			d := filepath.Join(dir, fmt.Sprintf("cold-%s-%d", in.key, r))
			p, _, t, err := launch(ctx, in, d)
			if err != nil {
				return nil, fmt.Errorf("cold start %s: %w", in.name, err)
			}
			stop(p)
			_ = os.RemoveAll(d)
			times[in.key] = append(times[in.key], float64(t))
		}
	}
	var out []coldResult
	for _, in := range insts {
		ts := times[in.key]
		if len(ts) == 0 {
			continue
		}
		lo, hi := ts[0], ts[0]
		for _, t := range ts {
			lo, hi = min(lo, t), max(hi, t)
		}
		out = append(out, coldResult{Key: in.key, Name: in.name, Median: time.Duration(median(ts)), Min: time.Duration(lo), Max: time.Duration(hi)})
	}
	return out, nil
}
