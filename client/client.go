package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"
)

// maxAnswer bounds the body of an answer the client reads (a batch of 1000
// IDs is 39 KiB).
const maxAnswer = 1 << 20

// Client calls the idgen HTTP API. It is safe for concurrent use; Close
// releases its idle connections.
type Client struct {
	cfg Config
	hc  *http.Client
	own *http.Transport // nil when Config.HTTPClient is used
	eps *endpoints
}

// New returns a Client of cfg, or an error wrapping ErrConfig. It sends no
// request.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	bases := make([]string, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		bases[i] = strings.TrimRight(e, "/")
	}
	c := &Client{cfg: cfg, eps: newEndpoints(bases)}
	if cfg.HTTPClient != nil {
		c.hc = cfg.HTTPClient
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.TLS != nil {
			tr.TLSClientConfig = cfg.TLS.Clone()
		}
		tr.MaxIdleConnsPerHost = 32
		c.own = tr
		c.hc = &http.Client{
			Transport: tr,
			// The API never redirects; a redirect is answered as it is
			// rather than followed with the token.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c, nil
}

// Close closes the idle connections of the client's own transport (not
// those of a Config.HTTPClient). Calls in flight finish; the Client stays
// usable.
func (c *Client) Close() error {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

// call is one API call, sent the same on every attempt.
type call struct {
	op      string // for errors: "generate", "commit", ...
	method  string
	path    string
	body    []byte // JSON; nil: none
	idemKey string // Idempotency-Key; "": none
}

// answer is a whole HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends r until an attempt answers 2xx, an answer is not retryable,
// the attempts run out, or ctx ends.
//
// Why a retry never does a call twice: r, its body and its
// Idempotency-Key included, is fixed before the first attempt, so every
// attempt is the same request. A generate the server already did answers
// its stored IDs again under that key; a commit or compensation already
// done answers its first answer again (the registry's compare-and-set
// decides, not the request); a read does nothing. So an attempt whose
// answer was lost is retried like one never sent.
func (c *Client) do(ctx context.Context, r call) (*answer, error) {
	tried := make([]bool, len(c.eps.list))
	var last error
	for attempt := 1; ; attempt++ {
		now := time.Now()
		i, notBefore := c.eps.pick(now, tried)
		wait := notBefore.Sub(now)
		if tried[i] {
			wait = max(wait, backoff.Full(attempt-2, c.cfg.Retry.BaseBackoff, c.cfg.Retry.MaxBackoff))
		}
		if wait > 0 {
			if dl, ok := ctx.Deadline(); ok && last != nil && now.Add(wait).After(dl) {
				return nil, fmt.Errorf("client: %s: %w (the next attempt, in %v, would fall after the context's deadline)", r.op, last, wait.Round(time.Millisecond))
			}
			if !backoff.Sleep(ctx, wait) {
				return nil, c.ended(r.op, ctx.Err(), last)
			}
		}
		tried[i] = true
		a, err := c.attempt(ctx, i, r)
		now = time.Now()
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, c.ended(r.op, ctx.Err(), last)
		case err != nil:
			var perm *permanentError
			var cert *tls.CertificateVerificationError
			if errors.As(err, &perm) || errors.As(err, &cert) {
				return nil, fmt.Errorf("client: %s: %w", r.op, err)
			}
			c.eps.failed(i, now, c.cfg.Cooldown, 0)
			last = err // a *url.Error: it names the endpoint
		case a.status >= 200 && a.status < 300:
			c.eps.succeeded(i)
			return a, nil
		default:
			e := a.asError(now)
			switch e.Status {
			case http.StatusServiceUnavailable:
				c.eps.failed(i, now, c.cfg.Cooldown, e.RetryAfter)
			case http.StatusTooManyRequests:
				c.eps.throttled(i, now, e.RetryAfter)
			default:
				c.eps.succeeded(i)
			}
			if !e.retryable() {
				return nil, e
			}
			last = e
		}
		if attempt >= c.cfg.Retry.MaxAttempts {
			return nil, fmt.Errorf("client: %s: giving up after %d attempts: %w", r.op, attempt, last)
		}
	}
}

// ended is the error of a call whose context ended: it wraps both the
// context's error and the last failure, if any.
func (c *Client) ended(op string, ctxErr, last error) error {
	if last == nil {
		return fmt.Errorf("client: %s: %w", op, ctxErr)
	}
	return fmt.Errorf("client: %s: %w; last failure: %w", op, ctxErr, last)
}

// permanentError is a failure of an attempt that another attempt would
// repeat: the TokenSource failed, the answer is too large.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// attempt sends r once to endpoint i and reads the whole answer.
func (c *Client) attempt(ctx context.Context, i int, r call) (*answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
	defer cancel()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.eps.base(i)+r.path, body)
	if err != nil {
		return nil, err
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if r.idemKey != "" {
		req.Header.Set("Idempotency-Key", r.idemKey)
	}
	if c.cfg.Token != nil {
		tok, err := c.cfg.Token.Token(ctx)
		if err != nil {
			return nil, &permanentError{fmt.Errorf("token: %w", err)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", req.URL, err)
	}
	if len(b) > maxAnswer {
		return nil, &permanentError{fmt.Errorf("%s answered more than %d bytes", resp.Request.URL, maxAnswer)}
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// asError reads an error answer.
func (a *answer) asError(now time.Time) *Error {
	e := &Error{
		Status:     a.status,
		RequestID:  a.header.Get("X-Request-ID"),
		RetryAfter: parseRetryAfter(a.header.Get("Retry-After"), now),
	}
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &body) == nil && body.Error != nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
		return e
	}
	e.Code = codeOfStatus(a.status)
	e.Message = http.StatusText(a.status)
	if s := strings.TrimSpace(string(a.body)); s != "" {
		e.Message += ": " + truncate(s, 200)
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
