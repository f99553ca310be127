package zkharness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/idgen/idgen/harness/proc"
)

// debianJavaDir is where the Debian zookeeper package and its dependencies
// put their jars.
const debianJavaDir = "/usr/share/java"

// mainClass runs both standalone and quorum servers: it falls back to
// standalone when the config names no other server.
const mainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

// defaultClassPath is zookeeper.jar (its manifest Class-Path names jute,
// jetty, slf4j-api and some of netty) plus what the Debian 3.8 manifest
// misses:
//   - an slf4j binding: the Debian build logs through slf4j to log4j 1.2,
//     not logback as upstream 3.8 does, and without a binding slf4j drops
//     every line;
//   - netty-codec and netty-resolver: without them the Netty connection
//     factory (needed for TLS) fails every connection with
//     NoClassDefFoundError io/netty/handler/codec/ByteToMessageDecoder.
func defaultClassPath() []string {
	jars := []string{
		"zookeeper.jar",
		"slf4j-log4j12.jar", "log4j-1.2.jar",
		"netty-codec.jar", "netty-resolver.jar", "netty-transport-native-unix-common.jar",
	}
	for i, j := range jars {
		jars[i] = filepath.Join(debianJavaDir, j)
	}
	return jars
}

// locate resolves the java binary and checks that every jar exists, so a
// missing package fails fast with ErrNotInstalled instead of a JVM stack trace.
func locate(o Options) (java string, err error) {
	java, err = exec.LookPath(o.Java)
	if err != nil {
		return "", fmt.Errorf("%w: java: %v", ErrNotInstalled, err)
	}
	for _, jar := range o.ClassPath {
		if _, err := os.Stat(jar); err != nil {
			return "", fmt.Errorf("%w: %v", ErrNotInstalled, err)
		}
	}
	return java, nil
}

// pickPorts returns n distinct free loopback ports (proc.FreePorts). They
// can still be taken by someone else before the JVM binds them, which Start
// handles by retrying (ErrPortInUse).
func pickPorts(n int) ([]int, error) {
	ports, err := proc.FreePorts(n, nil)
	if err != nil {
		return nil, fmt.Errorf("zkharness: pick port: %w", err)
	}
	return ports, nil
}

// assignPorts gives every server fresh ports.
func (e *Ensemble) assignPorts() error {
	per := 3
	if e.tls != nil {
		per = 4
	}
	ports, err := e.opts.pickPorts(per * len(e.servers))
	if err != nil {
		return err
	}
	for i, s := range e.servers {
		p := ports[i*per:]
		s.clientPort, s.quorumPort, s.electionPort = p[0], p[1], p[2]
		if e.tls != nil {
			s.securePort = p[3]
		}
	}
	return nil
}

// writeConfigs writes zoo.cfg, myid and log4j.properties of every server.
func (e *Ensemble) writeConfigs() error {
	for _, s := range e.servers {
		if err := os.MkdirAll(s.dataDir(), 0o755); err != nil {
			return fmt.Errorf("zkharness: server dir: %w", err)
		}
		files := map[string]string{
			s.cfgPath():                              e.zooCfg(s),
			filepath.Join(s.dataDir(), "myid"):       strconv.Itoa(s.myid()) + "\n",
			filepath.Join(s.dir, "log4j.properties"): log4jProperties,
		}
		for path, text := range files {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				return fmt.Errorf("zkharness: write config: %w", err)
			}
		}
	}
	return nil
}

// zooCfg renders the config of server s. Keys ZooKeeper does not know itself
// (serverCnxnFactory, ssl.*, 4lw.*, admin.*, forceSync, ...) become system
// properties "zookeeper.<key>" when the file is parsed.
func (e *Ensemble) zooCfg(s *server) string {
	tick := int(e.opts.TickTime.Milliseconds())
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("tickTime=%d", tick)
	w("initLimit=20")
	w("syncLimit=10")
	w("minSessionTimeout=%d", 2*tick)
	w("maxSessionTimeout=%d", max(60000, 20*tick))
	w("dataDir=%s", s.dataDir())
	w("clientPortAddress=127.0.0.1")
	w("clientPort=%d", s.clientPort)
	w("maxClientCnxns=0") // many test clients share 127.0.0.1; default is 60
	w("4lw.commands.whitelist=srvr,ruok,stat,mntr,conf")
	w("admin.enableServer=false")
	w("snapCount=1000")
	w("preAllocSize=4096") // KiB; the 64 MiB default adds up over many servers
	w("autopurge.snapRetainCount=3")
	w("autopurge.purgeInterval=1")
	if !e.opts.Fsync {
		w("forceSync=no")
	}
	if len(e.servers) > 1 {
		w("cnxTimeout=2000")
		for _, p := range e.servers {
			w("server.%d=127.0.0.1:%d:%d", p.myid(), p.quorumPort, p.electionPort)
		}
	}
	if e.tls != nil {
		w("serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory")
		w("secureClientPortAddress=127.0.0.1")
		w("secureClientPort=%d", s.securePort)
		w("ssl.keyStore.location=%s", e.tls.keyStore)
		w("ssl.keyStore.type=PEM")
		w("ssl.trustStore.location=%s", e.tls.CAFile)
		w("ssl.trustStore.type=PEM")
		w("ssl.clientAuth=want")
		w("authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider")
	}
	return b.String()
}

// log4jProperties logs INFO and up to zookeeper.log in the server's dir
// (zookeeper.log.dir is set per JVM), rolled at 10 MiB so long chaos runs stay
// bounded.
const log4jProperties = `log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.RollingFileAppender
log4j.appender.FILE.File=${zookeeper.log.dir}/zookeeper.log
log4j.appender.FILE.Append=true
log4j.appender.FILE.MaxFileSize=10MB
log4j.appender.FILE.MaxBackupIndex=2
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
`

// javaArgs is the command line of server s after the java binary.
func (e *Ensemble) javaArgs(s *server) []string {
	args := []string{
		e.opts.JVMHeap,
		// Serial GC and C1 only: the JVM starts in a fraction of the time on
		// a small box, and a test ensemble never needs C2's peak speed.
		"-XX:+UseSerialGC",
		"-XX:TieredStopAtLevel=1",
		"-XX:-UsePerfData",
		"-Djava.net.preferIPv4Stack=true",
		"-Dzookeeper.log.dir=" + s.dir,
		"-Dzookeeper.log.file=zookeeper.log",
		"-Dlog4j.configuration=file:" + filepath.Join(s.dir, "log4j.properties"),
		"-Dzookeeper.admin.enableServer=false",
		"-Dzookeeper.jmx.log4j.disable=true",
		// A learner that synced by DIFF has a txn log but no snapshot and
		// would refuse to restart without this (ZOOKEEPER-3056).
		"-Dzookeeper.snapshot.trust.empty=true",
		// Election notifications back off up to 60 s by default; JVMs that
		// start seconds apart would then wait that long for each other.
		"-Dzookeeper.fastleader.maxNotificationInterval=1000",
	}
	args = append(args, e.opts.JVMArgs...)
	return append(args, "-cp", strings.Join(e.opts.ClassPath, ":"), mainClass, s.cfgPath())
}
