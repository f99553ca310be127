package securee2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/api/apitest"
	"github.com/idgen/idgen/tests/internal/apicheck"

	"github.com/go-zookeeper/zk"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/testpki"
	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/registry/redisstore/redisstoretest"
	"github.com/idgen/idgen/tests/internal/idgenproc"
)

// readyTimeout bounds an idgen start (TLS handshakes with ZooKeeper and
// Redis, session, worker slot, first range claim) on a busy box.
const readyTimeout = 90 * time.Second

// requestTimeout bounds one HTTP request of the tests.
const requestTimeout = 30 * time.Second

// Credentials of the stack (test-only values).
const (
	zkUser        = "idgen-svc"
	zkPassword    = "zk-Digest-Pa55-securee2e"
	redisUser     = "idgen-redis"
	redisPassword = "redis-ACL-Pa55-securee2e"
)

// stack is everything the idgen instances of one test share: the TLS
// ZooKeeper ensemble and a root of the test's own, a Redis with TLS and an
// ACL user, the HTTPS certificate, the JWT key, the metadata key.
type stack struct {
	t    *testing.T
	dir  string
	zk   *zkharness.Ensemble
	root string

	zkPwFile    string
	redis       *redisharness.Server
	redisPwFile string
	redisTLS    [3]string // CA, client certificate, client key

	httpCA           *ca
	srvCert, srvKey  string
	clientCA         *ca    // set for mTLS (--tls-client-ca)
	clientCert       string // signed by clientCA
	clientKey        string
	jwt              *signer
	jwtPub, metaKeys string

	client *http.Client // trusts httpCA; presents the client certificate under mTLS
	tls    *tls.Config  // client's TLS configuration
}

type stackOpts struct {
	mTLS bool
}

func newStack(t *testing.T, o stackOpts) *stack {
	t.Helper()
	s := &stack{t: t, dir: t.TempDir()}
	s.zk, s.root = zooKeeper(t)
	s.redis = redisharness.StartStandaloneT(t, redisharness.Options{AppendFsyncAlways: true, TLS: true, ACLUser: redisUser, ACLPassword: redisPassword, Password: "default-user-" + randHex(8)})
	ca, cert, key := s.redis.TLSFiles()
	s.redisTLS = [3]string{ca, cert, key}
	s.zkPwFile = writeSecretFile(t, s.dir, "zk.password", zkPassword)
	s.redisPwFile = writeSecretFile(t, s.dir, "redis.password", redisPassword)
	s.metaKeys = writeSecretFile(t, s.dir, "metadata.keys", "k1 "+randHex(32))
	s.httpCA = newCA(t, s.dir, "securee2e-https-ca")
	s.srvCert, s.srvKey = s.httpCA.issue(t, s.dir, "idgen-server", false)
	s.jwt = newSigner(t, s.dir, "stack-es256", true)
	s.jwtPub = s.jwt.writePublic(t, s.dir)
	var tlsCfg *tls.Config
	if o.mTLS {
		s.clientCA = newCA(t, s.dir, "securee2e-client-ca")
		s.clientCert, s.clientKey = s.clientCA.issue(t, s.dir, "payments-client", true)
		tlsCfg = clientTLS(t, s.httpCA, s.clientCert, s.clientKey)
	} else {
		tlsCfg = clientTLS(t, s.httpCA, "", "")
	}
	s.client, s.tls = httpsClient(t, tlsCfg), tlsCfg
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeSecretFile(t testing.TB, dir, name, v string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// httpsClient is a keep-alive client with cfg; every answer it receives is
// checked against api/openapi.json (apitest.Transport), and one the
// document does not describe fails tb.
func httpsClient(tb apitest.TB, cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: requestTimeout, Transport: apitest.Transport(&http.Transport{
		TLSClientConfig: cfg, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, TLSHandshakeTimeout: 10 * time.Second,
	}, tb)}
}

// redisArgs are the Redis flags of serve and compensate.
func (s *stack) redisArgs() []string {
	return []string{"--redis-addr", s.redis.Addr(),
		"--redis-tls-ca", s.redisTLS[0], "--redis-tls-cert", s.redisTLS[1], "--redis-tls-key", s.redisTLS[2],
		"--redis-username", redisUser, "--redis-password-file", s.redisPwFile}
}

// serveArgs is the command line of an instance: nothing in development
// mode, every connection with TLS.
func (s *stack) serveArgs(listen, dataDir string) []string {
	zkCA, zkCert, zkKey := s.zk.TLSFiles()
	a := []string{"serve",
		"--listen", listen, "--data-dir", dataDir, "--audit-log", filepath.Join(dataDir, "audit.log"),
		"--tls-cert", s.srvCert, "--tls-key", s.srvKey,
		"--zookeeper", strings.Join(s.zk.TLSAddrs(), ","), "--zookeeper-root", s.root,
		"--zookeeper-tls-ca", zkCA, "--zookeeper-tls-cert", zkCert, "--zookeeper-tls-key", zkKey,
		"--zookeeper-user", zkUser, "--zookeeper-password-file", s.zkPwFile,
		"--metadata-key-file", s.metaKeys,
		"--jwt-public-key", s.jwtPub, "--jwt-issuer", jwtIssuer, "--jwt-audience", jwtAudience,
	}
	if s.clientCA != nil {
		a = append(a, "--tls-client-ca", s.clientCA.file)
	}
	return append(a, s.redisArgs()...)
}

// instance is one `idgen serve` child process (idgenproc).
type instance struct {
	name    string
	addr    string
	url     string // https://addr
	args    []string
	dataDir string
	audit   string
	p       *proc.Process
	c       *idgenproc.Child
}

// start starts an instance of the stack and waits for /health/ready.
func (s *stack) start(name string) *instance {
	s.t.Helper()
	return startInstance(s.t, name, s.client, s.serveArgs)
}

// startInstance starts `idgen serve` with args(listen, dataDir) and waits
// until GET /health/ready over HTTPS answers 200 (the endpoint is open).
func startInstance(t *testing.T, name string, client *http.Client, args func(listen, dataDir string) []string) *instance {
	t.Helper()
	c, err := idgenproc.Launch(context.Background(), idgenproc.Options{
		Name: name, Bin: idgenBin, Args: args, DataDir: t.TempDir, Scheme: "https",
		Client: client, ReadyTimeout: readyTimeout, ErrorLines: [2]int{0, 40},
	})
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{name: name, addr: c.Addr, url: c.URL, args: c.Args, dataDir: c.DataDir, audit: filepath.Join(c.DataDir, "audit.log"), p: c.Proc, c: c}
	t.Cleanup(func() { in.stop(t) })
	return in
}

// stop sends SIGTERM and expects exit code 0; the instance's stderr is
// shown when the test failed. Only the first call acts.
func (in *instance) stop(t testing.TB) {
	in.c.Stop(t, os.Getenv("SECUREE2E_LOGS") == "1", 0, 120)
}

// worker is one `idgen compensate` child process.
type worker struct {
	p     *proc.Process
	audit string
}

// startWorker starts the compensate worker over the stack's Redis (TLS,
// ACL user); it is killed when the test ends.
func (s *stack) startWorker(name string) *worker {
	s.t.Helper()
	w := &worker{audit: filepath.Join(s.t.TempDir(), "compensate-audit.log")}
	args := append([]string{"compensate", "--audit-log", w.audit, "--consumer", name, "--claim-idle", "5s"}, s.redisArgs()...)
	p, err := proc.Start(idgenBin, proc.Options{Args: args, DropEnv: []string{"IDGEN_"}, Dir: s.t.TempDir()})
	if err != nil {
		s.t.Fatal(err)
	}
	w.p = p
	s.t.Cleanup(func() {
		_ = p.Kill()
		if s.t.Failed() || os.Getenv("SECUREE2E_LOGS") == "1" {
			s.t.Logf("---- stderr of %s ----\n%s", name, idgenproc.Excerpt(p.Stderr(), 0, 60))
		}
	})
	return w
}

// redisTLSConfig is how the test's own clients reach Redis: the harness's
// CA, no client certificate (optional on the server), the ACL user.
func (s *stack) redisTLSConfig() *tls.Config {
	s.t.Helper()
	c, err := testpki.LoadClientConfig(s.redisTLS[0], "", "")
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// rawRedis is a go-redis client over TLS as the ACL user.
func (s *stack) rawRedis() *redis.Client {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.redis.Addr(), Username: redisUser, Password: redisPassword, TLSConfig: s.redisTLSConfig(),
		DisableIdentity: true, ReadTimeout: 10 * time.Second, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// registry opens the registry as idgen does (read side of the test).
func (s *stack) registry() *redisstore.Store {
	s.t.Helper()
	return redisstoretest.Open(s.t, redisstore.Config{Addrs: []string{s.redis.Addr()}, Username: redisUser, Password: redisPassword,
		TLS: s.redisTLSConfig()})
}

// zkConn opens a ZooKeeper session over TLS (the harness's client
// certificate), with the digest credentials when withAuth.
func (s *stack) zkConn(withAuth bool) *zk.Conn {
	s.t.Helper()
	cfg, err := testpki.LoadClientConfig(s.zk.TLSFiles())
	if err != nil {
		s.t.Fatal(err)
	}
	dial := func(network, addr string, timeout time.Duration) (net.Conn, error) {
		return (&tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: cfg}).Dial(network, addr)
	}
	conn, _, err := zk.Connect(s.zk.TLSAddrs(), 10*time.Second, zk.WithDialer(dial), zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
	if err != nil {
		s.t.Fatalf("zk.Connect over TLS: %v", err)
	}
	s.t.Cleanup(conn.Close)
	if withAuth {
		if err := conn.AddAuth("digest", []byte(zkUser+":"+zkPassword)); err != nil {
			s.t.Fatalf("AddAuth: %v", err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for conn.State() != zk.StateHasSession {
		if time.Now().After(deadline) {
			s.t.Fatalf("no ZooKeeper session over TLS after 30s (state %v)", conn.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return conn
}

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

// TestClientChecksEveryAnswer: the suite's client holds every answer to
// the OpenAPI document, not a sample, and fails the test on one it does
// not describe.
func TestClientChecksEveryAnswer(t *testing.T) {
	apicheck.Prove(t, true, func(tb apitest.TB, srv *httptest.Server) *http.Client {
		return httpsClient(tb, srv.Client().Transport.(*http.Transport).TLSClientConfig)
	})
}
