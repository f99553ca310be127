package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Defaults of a zero Config.
const (
	DefaultMaxAttempts    = 4
	DefaultBaseBackoff    = 50 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
	DefaultCooldown       = 5 * time.Second
	DefaultAttemptTimeout = 10 * time.Second
)

// ErrConfig means New refused its Config.
var ErrConfig = errors.New("client: invalid config")

// TokenSource yields the bearer token of a request. The client asks for a
// token before every attempt, so a source that refreshes an expiring token
// is asked again on a retry. An error from it ends the call unretried.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a TokenSource that always yields the same token.
type StaticToken string

// Token returns the token itself.
func (s StaticToken) Token(context.Context) (string, error) { return string(s), nil }

var _ TokenSource = StaticToken("")

// RetryPolicy bounds the retries of one call. The zero value means the
// defaults: DefaultMaxAttempts, DefaultBaseBackoff, DefaultMaxBackoff.
type RetryPolicy struct {
	// MaxAttempts is the number of requests one call sends at most, over
	// all endpoints; 1 turns retries off.
	MaxAttempts int
	// BaseBackoff is the upper bound of the first backoff; each further
	// retry doubles it, up to MaxBackoff. The wait itself is drawn
	// uniformly from [0, bound] (full jitter), and is never shorter than a
	// Retry-After the server gave.
	BaseBackoff time.Duration
	// MaxBackoff caps the bound of the jitter (not a Retry-After).
	MaxBackoff time.Duration
}

// Config of New. The zero value is not usable: Endpoints is required.
// Every other zero field means its documented default.
type Config struct {
	// Endpoints are the base URLs of the service ("https://idgen-1:8443"),
	// in order of preference: a call goes to the first endpoint that is
	// not cooling down. At least one is required; http and https only.
	Endpoints []string
	// Token yields the bearer token; nil sends none (a server in --dev).
	Token TokenSource
	// TLS is the TLS configuration of https endpoints: RootCAs to trust a
	// private CA, Certificates for mTLS. Nil means the system roots. It
	// excludes HTTPClient.
	TLS *tls.Config
	// HTTPClient replaces the client's own *http.Client (and its
	// transport). Its Timeout, if any, bounds every attempt too.
	HTTPClient *http.Client
	// Retry bounds the retries of a call; see RetryPolicy.
	Retry RetryPolicy
	// Cooldown is how long an endpoint that failed with a connection error
	// or 503 is skipped while another endpoint is not cooling down.
	// Default DefaultCooldown.
	Cooldown time.Duration
	// AttemptTimeout bounds one attempt, so that a hung endpoint is left
	// for the next one within the call's own deadline. Default
	// DefaultAttemptTimeout; the context's deadline bounds the call.
	AttemptTimeout time.Duration
	// UserAgent is sent with every request. Default "idgen-go-client".
	UserAgent string
}

// Validate reports a Config New refuses, wrapping ErrConfig.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("%w: no endpoint", ErrConfig)
	}
	for _, e := range c.Endpoints {
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("%w: endpoint %q: %v", ErrConfig, e, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: endpoint %q: want http://host[:port] or https://host[:port]", ErrConfig, e)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%w: endpoint %q: no query, fragment or user info", ErrConfig, e)
		}
	}
	if c.TLS != nil && c.HTTPClient != nil {
		return fmt.Errorf("%w: TLS and HTTPClient exclude each other (set the TLS config on the HTTPClient's transport)", ErrConfig)
	}
	switch {
	case c.Retry.MaxAttempts < 0:
		return fmt.Errorf("%w: Retry.MaxAttempts %d is negative", ErrConfig, c.Retry.MaxAttempts)
	case c.Retry.BaseBackoff < 0, c.Retry.MaxBackoff < 0:
		return fmt.Errorf("%w: negative backoff", ErrConfig)
	case c.Cooldown < 0:
		return fmt.Errorf("%w: negative Cooldown", ErrConfig)
	case c.AttemptTimeout < 0:
		return fmt.Errorf("%w: negative AttemptTimeout", ErrConfig)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Retry.MaxAttempts = cmp.Or(c.Retry.MaxAttempts, DefaultMaxAttempts)
	c.Retry.BaseBackoff = cmp.Or(c.Retry.BaseBackoff, DefaultBaseBackoff)
	c.Retry.MaxBackoff = max(cmp.Or(c.Retry.MaxBackoff, DefaultMaxBackoff), c.Retry.BaseBackoff)
	c.Cooldown = cmp.Or(c.Cooldown, DefaultCooldown)
	c.AttemptTimeout = cmp.Or(c.AttemptTimeout, DefaultAttemptTimeout)
	c.UserAgent = cmp.Or(c.UserAgent, "idgen-go-client")
	return c
}
