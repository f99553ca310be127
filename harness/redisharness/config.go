package redisharness

import (
	"fmt"
	"os"
	"strings"
)

// quote renders v as one double-quoted config argument in the escapes
// Redis's parser (sdssplitargs) knows: \\, \" and \xHH for control bytes.
func quote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// confWriter collects config lines.
type confWriter struct{ strings.Builder }

func (w *confWriter) line(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }

// common writes what every process gets: listener, TLS, logging, auth.
func (e *env) common(w *confWriter, s *Server) {
	w.line("bind 127.0.0.1")
	w.line("daemonize no")
	w.line(`logfile ""`) // stdout, which launch sends to server.log
	w.line("dir %s", quote(s.dir))
	if e.tls == nil {
		w.line("port %d", s.port)
	} else {
		w.line("port 0")
		w.line("tls-port %d", s.port)
		w.line("tls-cert-file %s", quote(e.tls.ServerCert))
		w.line("tls-key-file %s", quote(e.tls.ServerKey))
		w.line("tls-ca-cert-file %s", quote(e.tls.CAFile))
		w.line("tls-auth-clients optional")
		// Replicas, Sentinels and the cluster bus dial with TLS too, using
		// the server certificate as their client certificate.
		w.line("tls-replication yes")
	}
	if p := e.opts.Password; p != "" {
		w.line("requirepass %s", quote(p))
	}
	if u := e.opts.ACLUser; u != "" {
		w.line("user %s on %s ~* &* +@all", u, quote(">"+e.opts.ACLPassword))
	}
}

// redisConf renders the config of a data node; replicaOf is the primary's
// address port ("" for none), cluster turns on cluster mode.
func (e *env) redisConf(s *Server, replicaOf int, cluster bool) string {
	var w confWriter
	e.common(&w, s)
	o := e.opts
	if o.AppendFsyncAlways {
		w.line("appendonly yes")
		w.line("appendfsync always")
	} else {
		w.line(`save ""`)
		w.line("appendonly no")
	}
	w.line("maxmemory-policy %s", o.MaxmemoryPolicy)
	if o.Password != "" {
		w.line("masterauth %s", quote(o.Password))
	}
	if o.MinReplicasToWrite > 0 {
		w.line("min-replicas-to-write %d", o.MinReplicasToWrite)
		w.line("min-replicas-max-lag 10")
	}
	w.line("replica-announce-ip 127.0.0.1")
	// The default waits 5 s for more replicas before a diskless full sync;
	// every (re)sync in a test would pay it.
	w.line("repl-diskless-sync-delay 0")
	if replicaOf != 0 {
		w.line("replicaof 127.0.0.1 %d", replicaOf)
	}
	if cluster {
		w.line("cluster-enabled yes")
		w.line("cluster-config-file nodes.conf")
		w.line("cluster-node-timeout 2000")
		w.line("cluster-announce-ip 127.0.0.1")
		if e.tls != nil {
			w.line("tls-cluster yes")
		}
	}
	return w.String()
}

// sentinelTiming is the failure detection of every Sentinel.
const (
	downAfterMs       = 1000
	failoverTimeoutMs = 5000
)

// sentinelConf renders the config of Sentinel s of group g. The other
// Sentinels and the replicas are written in as already known, with fixed
// run ids, so a fresh Sentinel needs no hello round (every 2 s) to find its
// peers before it can take part in a failover.
func (g *Group) sentinelConf(s *Server) string {
	var w confWriter
	e := g.env
	e.common(&w, s)
	w.line("sentinel myid %s", g.sentinelIDs[s])
	w.line("sentinel resolve-hostnames no")
	w.line("sentinel announce-hostnames no")
	w.line("sentinel announce-ip 127.0.0.1")
	m := masterName
	w.line("sentinel monitor %s 127.0.0.1 %d %d", m, g.data[0].port, len(g.sentinels)/2+1)
	w.line("sentinel down-after-milliseconds %s %d", m, downAfterMs)
	w.line("sentinel failover-timeout %s %d", m, failoverTimeoutMs)
	w.line("sentinel parallel-syncs %s 1", m)
	if p := e.opts.Password; p != "" {
		w.line("sentinel auth-pass %s %s", m, quote(p))
	}
	for _, r := range g.data[1:] {
		w.line("sentinel known-replica %s 127.0.0.1 %d", m, r.port)
	}
	for _, o := range g.sentinels {
		if o != s {
			w.line("sentinel known-sentinel %s 127.0.0.1 %d %s", m, o.port, g.sentinelIDs[o])
		}
	}
	return w.String()
}

// writeConf writes s's config file, writable by the process (Sentinel and
// CONFIG REWRITE rewrite it).
func writeConf(s *Server, text string) error {
	if err := os.WriteFile(s.confPath(), []byte(text), 0o644); err != nil {
		return fmt.Errorf("redisharness: write config of %s: %w", s.name, err)
	}
	return nil
}
