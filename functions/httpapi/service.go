// Package httpapi is the HTTP face of idgen: POST /generate and the saga,
// read and operations endpoints of docs/api.md, on fasthttp. The same Handle
// serves the fasthttp listener and the Lambda adapter (one code path).
//
// Invariants: an ID reaches a client only after its record is registered;
// every answer is JSON, errors in the {"error": {"code", "message"}} form with
// the status of the one code table (errors.go); bad input changes no state;
// every log line of a request carries its request ID. A request is routed on
// its path as sent, and a path whose decoded or normalised form could name
// another resource is refused (route.go); every string taken from a request
// is valid UTF-8 or the request is refused; a header read once is refused
// when repeated; a commit at or after an ID's deadline never commits it
// (expire.go).
package httpapi

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
	"github.com/idgen/idgen/shared/platform/logring"
	"github.com/idgen/idgen/shared/reconcile"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
)

// IDSource hands out fresh IDs (the generator).
type IDSource interface {
	NextN(ctx context.Context, n int, dst []idcodec.ID) ([]idcodec.ID, error)
	Stats() generator.Stats
}

// Registry stores issued IDs and their saga state. Once Register has
// returned nil it no longer reads iss (the service reuses that storage);
// after an error it may (a commit its context no longer waited for).
type Registry interface {
	Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error)
	Get(ctx context.Context, id idcodec.ID) (registry.Record, error)
	Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error)
}

// Membership lists the live instances.
type Membership interface {
	Members(ctx context.Context) ([]Member, error)
}

// Member is one live instance, as /instances shows it.
type Member struct {
	Worker    uint16    `json:"worker"`
	Shard     uint8     `json:"shard"`
	Address   string    `json:"address"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// Instance names this run of the instance, as its claims in the
	// claim ledger do ("" when unknown).
	Instance string `json:"instance,omitempty"`
}

// Check is one health check. A failing critical check makes the service
// "down" (503); any other failure makes it "degraded".
type Check struct {
	Name     string
	Critical bool
	Run      func(ctx context.Context) error
}

// Config of the service; the zero value means the documented defaults.
type Config struct {
	// Dev turns authentication off (the only way to run without it).
	Dev bool
	// RequestTimeout bounds the work of one request. Default 5s.
	RequestTimeout time.Duration
	// IdempotencyTTL is how long an Idempotency-Key answers the same. Default 24h.
	IdempotencyTTL time.Duration
	// MaxBody is the largest request body. Default 64 KiB. Handle enforces
	// it (the Lambda path has no server limit); the fasthttp server uses the
	// same value through MaxBody().
	MaxBody int
	// MaxMetadata is the largest "metadata" object. Default 1 KiB.
	MaxMetadata int
	// MaxTimeout is the largest "timeout_ms". Default 7 days.
	MaxTimeout time.Duration
	// Now is the clock for records; nil = time.Now.
	Now func() time.Time
	// AuditFailOpen lets state-changing calls proceed while the audit sink
	// fails. Default false: they answer 503 (fail closed).
	AuditFailOpen bool
	// Instance names this process in audit lines.
	Instance string
	// RateLimit is the sustained requests per second allowed to one subject
	// (0 = no limit); RateBurst the bucket size (default: one second's worth).
	// Over the limit the answer is 429 with Retry-After.
	RateLimit float64
	RateBurst int
	// AccessLogEvery samples the access log: one line at info for one
	// request in AccessLogEvery answered below 500 (every answer of 500 or
	// above has its line). Default 1: every request.
	AccessLogEvery int
	// NoAccessLog turns the access log off; answers of 500 and above keep
	// their lines.
	NoAccessLog bool
}

func (c Config) withDefaults() Config {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = 24 * time.Hour
	}
	if c.MaxBody == 0 {
		c.MaxBody = 64 << 10
	}
	if c.MaxMetadata == 0 {
		c.MaxMetadata = 1 << 10
	}
	if c.MaxTimeout == 0 {
		c.MaxTimeout = 7 * 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.AccessLogEvery = cmp.Or(c.AccessLogEvery, 1)
	return c
}

// Authenticator verifies a bearer token (shared/platform/auth.Verifier).
type Authenticator interface {
	Verify(token string) (auth.Principal, error)
}

// Auditor records the audit trail (shared/platform/audit.Log).
type Auditor interface {
	Record(e audit.Event) error
	Healthy() error
}

// Sealer encrypts metadata at rest with the subject's data key, bound to
// its ID, and erases a subject's key (shared/platform/sealer.Vault).
type Sealer interface {
	Seal(ctx context.Context, subject string, id, plain []byte) ([]byte, error)
	Open(ctx context.Context, subject string, id, sealed []byte) ([]byte, error)
	Erase(ctx context.Context, subject string) error
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.RequestTimeout < 0 || c.IdempotencyTTL < 0 || c.MaxTimeout < 0:
		return errors.New("httpapi: negative duration in config")
	case c.MaxBody < 1024:
		return fmt.Errorf("httpapi: max body %d below 1 KiB", c.MaxBody)
	case c.RateLimit < 0 || c.RateBurst < 0:
		return errors.New("httpapi: negative rate limit")
	case c.AccessLogEvery < 0:
		return errors.New("httpapi: negative access log sampling")
	case c.MaxMetadata < 1 || c.MaxMetadata > c.MaxBody:
		return fmt.Errorf("httpapi: max metadata %d outside 1..max body", c.MaxMetadata)
	}
	return nil
}

// Deps are the collaborators of the service.
type Deps struct {
	IDs        IDSource
	Registry   Registry
	Membership Membership
	Checks     []Check
	Logger     *zap.Logger
	Logs       *logring.Ring
	Metrics    *Metrics
	Sealer     Sealer        // required: metadata is never stored in clear
	Auth       Authenticator // required unless Config.Dev
	Audit      Auditor       // required
	// CompensationMarks remembers which compensations of POST /compensate
	// are audited, so that a client's retry writes the audit entry of an
	// attempt whose effect was stored and whose entry was not (it died, or
	// the audit log refused the entry): saga.RedisMarks with the
	// Redis registry (shared by every instance), saga.StoreMarks
	// with an embedded store. Default nil: no such recovery, an effect is
	// audited at most once and a refused entry is never written.
	CompensationMarks saga.Marker
	// CommitMarks does the same for POST /commit (its own key space: an ID
	// may be committed and later compensated). Default nil.
	CommitMarks saga.Marker
	// Tracer starts the spans of requests (tracing.Provider.Tracer): the
	// server span, continuing an incoming W3C traceparent, and its
	// registry.register child. Default nil: tracing off, no span and no
	// trace context is made.
	Tracer trace.Tracer
	// Ledger is the registry's claim ledger that GET /reconcile reads, of
	// shard Shard; SharedLedger says every instance of the shard records
	// its claims there (reconcile.Query). Default nil: /reconcile answers
	// 503.
	Ledger       reconcile.Reader
	Shard        uint8
	SharedLedger bool
}

// Service handles the HTTP API. Safe for concurrent use.
type Service struct {
	cfg Config
	d   Deps
	log *zap.Logger
	// access writes the access lines: the log without the caller, which
	// is always finish and costs a stack walk per request.
	access   *zap.Logger
	draining atomic.Bool
	// reconciling is held by the GET /reconcile that runs.
	reconciling sync.Mutex
	reqSeq      atomic.Uint64
	// accessSeq counts the answers below 500, for the access log's
	// sampling.
	accessSeq atomic.Uint64
	reqPfx    string
	limits    *limiters
	// maxBodyVal is cfg.MaxBody boxed once, not on every request.
	maxBodyVal any
	// deadlines are the request contexts, shared per millisecond.
	deadlines deadlines
	// comp is the compensation core of POST /compensate, without its
	// Recorder (each request gives one: requestAudit).
	comp saga.Core
	// refusedLog lets one "unavailable" warning a second through: a full
	// disk or a lost registry refuses every request, and a line each
	// would fill the log (often on the same disk). refusedQuiet counts
	// the ones left out, told in the next line.
	refusedLog   rate.Sometimes
	refusedQuiet atomic.Uint64
	// reqs pools the requests' reqLogs.
	reqs sync.Pool
	// devPrincipalVal is devPrincipal boxed once, for SetUserValue.
	devPrincipalVal any
}

// New returns a Service. Deps.IDs, Deps.Registry and Deps.Sealer are
// required.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.IDs == nil || d.Registry == nil || d.Sealer == nil || d.Audit == nil {
		return nil, errors.New("httpapi: IDs, Registry, Sealer and Audit are required")
	}
	if d.Auth == nil && !cfg.Dev {
		return nil, errors.New("httpapi: an Authenticator is required unless in development mode")
	}
	cfg = cfg.withDefaults()
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Logs == nil {
		d.Logs = logring.New(0)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(d.IDs)
	}
	var p [4]byte
	_, _ = rand.Read(p[:])
	// A retry may overlap its first attempt: the claim on the entry (the
	// marks' lease) keeps them from both writing it, so a retry recovers a
	// missing entry at once (saga.Once).
	comp := saga.Core{Registry: d.Registry, Marks: d.CompensationMarks, Now: cfg.Now}
	return &Service{cfg: cfg, d: d, log: d.Logger, access: d.Logger.WithOptions(zap.WithCaller(false)), reqPfx: hex.EncodeToString(p[:]) + "-", limits: newLimiters(cfg.RateLimit, cfg.RateBurst), comp: comp, refusedLog: rate.Sometimes{Interval: time.Second},
		maxBodyVal: cfg.MaxBody, deadlines: deadlines{timeout: cfg.RequestTimeout},
		reqs: sync.Pool{New: func() any { return new(reqLog) }}, devPrincipalVal: devPrincipal}, nil
}

// SetDraining makes /health/ready answer 503 so load balancers stop sending
// new requests before shutdown.
func (s *Service) SetDraining() { s.draining.Store(true) }

// Handle serves one request.
func (s *Service) Handle(c *fasthttp.RequestCtx) {
	start := time.Now()
	log := s.reqs.Get().(*reqLog)
	log.reset(s.log)
	s.requestID(c, log)
	if s.d.Tracer != nil && !untracedProbe(c) {
		s.startSpan(c, log)
	}
	c.SetUserValue(maxBodyKey{}, s.maxBodyVal)
	route := s.route(c, log)
	s.finish(c, route, log, start)
	if !log.lent {
		s.reqs.Put(log)
	}
}

// HandleServerError answers what the HTTP server refused before Handle ran
// (body over the limit, headers too large, malformed request) with the JSON
// error, the request ID and the metrics of every other answer. Use it as
// fasthttp.Server.ErrorHandler.
func (s *Service) HandleServerError(c *fasthttp.RequestCtx, err error) {
	start := time.Now()
	log := &reqLog{base: s.log}
	s.requestID(c, log)
	if s.d.Tracer != nil {
		s.startSpan(c, log)
	}
	var e *Error
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		// An idle or slow connection timed out: close it with 408, which
		// clients know not to take as the answer to a request of theirs.
		c.SetConnectionClose()
		e = Errorf(api.CodeRequestTimeout, "the request was not received in time")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = Errorf(api.CodeBodyTooLarge, "request body is larger than %d bytes", s.cfg.MaxBody)
	case errors.As(err, &small):
		e = Errorf(api.CodeHeaderTooLarge, "request headers are too large")
	default:
		e = Errorf(api.CodeInvalidRequest, "malformed HTTP request")
	}
	s.log.Debug("request refused by the HTTP parser", zap.String(logring.RequestIDKey, log.requestID()), zap.Error(err))
	WriteError(c, e)
	s.finish(c, "refused", log, start)
}

// requestID takes a well-formed X-Request-ID or makes one, keeps it in
// log, and echoes it.
func (s *Service) requestID(c *fasthttp.RequestCtx, log *reqLog) {
	rid := c.Request.Header.Peek("X-Request-ID")
	if validRequestIDBytes(rid) {
		log.ridLen = copy(log.ridBuf[:], rid)
	} else {
		b := strconv.AppendUint(append(log.ridBuf[:0], s.reqPfx...), s.reqSeq.Add(1), 36)
		log.ridLen = len(b)
	}
	c.Response.Header.SetBytesV("X-Request-ID", log.ridBuf[:log.ridLen])
}

// finish counts the request in the metrics and writes its access line:
// request ID, method, route, status, latency, remote address, the caller's
// subject (when authorized) and the IDs the request named or was given
// (id for one; first_id, last_id and count for a batch). The line is
// written for every answer of 500 or above, and for one in
// Config.AccessLogEvery of the others (none with Config.NoAccessLog).
func (s *Service) finish(c *fasthttp.RequestCtx, route string, log *reqLog, start time.Time) {
	status := c.Response.StatusCode()
	latency := time.Since(start)
	s.d.Metrics.observeRequest(route, status, latency.Seconds())
	if log.span != nil {
		endSpan(c, log.span, route, status)
	}
	if status < 500 && (s.cfg.NoAccessLog || (s.accessSeq.Add(1)-1)%uint64(s.cfg.AccessLogEvery) != 0) {
		return
	}
	ce := s.access.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	ce.Write(log.accessLine(c, route, status, latency, principal(c).Subject)...)
}

// maxRequestID is the longest X-Request-ID or Idempotency-Key taken.
const maxRequestID = 128

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validRequestIDBytes is validRequestID of a header value as read.
func validRequestIDBytes(b []byte) bool {
	if len(b) == 0 || len(b) > maxRequestID {
		return false
	}
	for _, ch := range b {
		if ch < 0x21 || ch > 0x7e {
			return false
		}
	}
	return true
}

// fail writes the JSON error for err; unknown errors are logged here, once.
func (s *Service) fail(c *fasthttp.RequestCtx, log *reqLog, err error) {
	e, known := toError(err)
	if !known {
		log.L().Error("request failed", zap.Error(err))
	} else if e.Code == api.CodeUnavailable {
		logged := false
		s.refusedLog.Do(func() {
			logged = true
			log.L().Warn("request refused: unavailable", zap.Error(err), zap.Uint64("similar_not_logged", s.refusedQuiet.Swap(0)))
		})
		if !logged {
			s.refusedQuiet.Add(1)
		}
	}
	if e.Code == api.CodeUnavailable {
		c.Response.Header.Set("Retry-After", "1")
	}
	WriteError(c, e)
}

// WriteError writes e as the JSON error body with its status. The fasthttp
// server's ErrorHandler uses it too.
func WriteError(c *fasthttp.RequestCtx, e *Error) {
	body, _ := json.Marshal(struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{Error: struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{e.Code, e.Message}})
	c.Response.Header.SetContentType("application/json")
	c.SetStatusCode(e.Status())
	c.SetBody(body)
}

func writeJSON(c *fasthttp.RequestCtx, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Response.Header.SetContentType("application/json")
	c.SetStatusCode(status)
	c.SetBody(body)
	return nil
}

// MaxBody returns the configured body limit, for the HTTP server.
func (s *Service) MaxBody() int { return s.cfg.MaxBody }
