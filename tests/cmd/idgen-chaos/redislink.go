package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/platform/ticker"
)

// redisLink is the Redis link of ONE idgen instance, through toxiproxy
// (used as a library) so that latency, lost packets and resets hit that
// instance only.
//
// Why one instance, and a direct address rather than Sentinel: a Sentinel
// client asks the Sentinels for the master's address and dials what they
// announce, the real 127.0.0.1:port of the data node, so a proxy in front
// of the Sentinels would not carry the data path, and the harness's
// Sentinels cannot be made to announce proxy ports. So the other instances
// and the compensate workers use Sentinel (and exercise its failover
// discovery), while this instance is configured with the proxy's address
// as a plain Redis address, and the proxy follows the master the Sentinels
// name (polled every followEvery), as a floating IP moved by a Sentinel
// client-reconfig script would: after a failover its connections are cut
// and new ones reach the new master.
type redisLink struct {
	group  *redisharness.Group
	server *toxiproxy.ApiServer
	proxy  *toxiproxy.Proxy
	logf   func(string, ...any)

	mu       sync.Mutex
	upstream string

	stop context.CancelFunc
	done chan struct{}
}

// followEvery is how often the link asks the Sentinels for the master.
const followEvery = 250 * time.Millisecond

func startRedisLink(g *redisharness.Group, logf func(string, ...any)) (*redisLink, error) {
	up := g.Primary().Addr()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "redis", "127.0.0.1:0", up)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("redis link proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &redisLink{group: g, server: srv, proxy: p, logf: logf, upstream: up, stop: cancel, done: make(chan struct{})}
	go l.follow(ctx)
	return l, nil
}

// Addr is the address the instance dials.
func (l *redisLink) Addr() string {
	l.proxy.Lock()
	defer l.proxy.Unlock()
	return l.proxy.Listen
}

// Upstream is the address the link forwards to.
func (l *redisLink) Upstream() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.upstream
}

func (l *redisLink) follow(ctx context.Context) {
	defer close(l.done)
	ticker.Every(ctx, followEvery, func() {
		addr := l.group.Primary().Addr()
		l.mu.Lock()
		changed := addr != l.upstream
		l.mu.Unlock()
		if !changed {
			return
		}
		listen := l.Addr()
		// Update with a new upstream stops the proxy (closing every
		// connection) and starts it again on the same port.
		if err := l.proxy.Update(&toxiproxy.Proxy{Listen: listen, Upstream: addr, Enabled: true}); err != nil {
			l.logf("redis link: follow master %s: %v", addr, err)
			return
		}
		l.mu.Lock()
		l.upstream = addr
		l.mu.Unlock()
		l.logf("redis link: now forwards to the master %s", addr)
	})
}

// toxic adds one toxic, given as toxiproxy's JSON.
func (l *redisLink) toxic(json string) error {
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(json)); err != nil {
		return fmt.Errorf("redis link toxic %s: %w", json, err)
	}
	return nil
}

// Latency delays every chunk both ways by latency ± jitter.
func (l *redisLink) Latency(latency, jitter time.Duration) error {
	for _, dir := range []string{"upstream", "downstream"} {
		err := l.toxic(fmt.Sprintf(`{"name":"latency_%s","type":"latency","stream":%q,"attributes":{"latency":%d,"jitter":%d}}`,
			dir, dir, latency.Milliseconds(), jitter.Milliseconds()))
		if err != nil {
			return err
		}
	}
	return nil
}

// Loss makes the link lossy: a fraction p of connections (decided per
// connection, as toxiproxy's toxicity is) stops delivering replies and is
// closed after stall (lost packets that TCP never recovers, then a
// timeout), and a fraction p/3 is reset shortly after it carries data.
func (l *redisLink) Loss(p float64, stall time.Duration) error {
	if err := l.toxic(fmt.Sprintf(`{"name":"loss","type":"timeout","stream":"downstream","toxicity":%g,"attributes":{"timeout":%d}}`,
		p, stall.Milliseconds())); err != nil {
		return err
	}
	return l.toxic(fmt.Sprintf(`{"name":"reset","type":"reset_peer","stream":"upstream","toxicity":%g,"attributes":{"timeout":200}}`, p/3))
}

// Clear removes every toxic and cuts every connection (a stalled one would
// otherwise stay stalled until its own timeout).
func (l *redisLink) Clear() error {
	l.proxy.Toxics.ResetToxics(context.Background())
	listen := l.Addr()
	l.mu.Lock()
	up := l.upstream
	l.mu.Unlock()
	l.proxy.Stop()
	return l.proxy.Update(&toxiproxy.Proxy{Listen: listen, Upstream: up, Enabled: true})
}

// Close stops following and closes the proxy.
func (l *redisLink) Close() {
	l.stop()
	<-l.done
	l.proxy.Stop()
}
