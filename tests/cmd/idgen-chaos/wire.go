package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
)

// wireAnswer is one HTTP answer as it came over the connection, before the
// Go client read it: the checks hold idgen's answers to the contract with
// what the client hides (the exact status, HAProxy's own pages, the
// backend that answered, a body the client would refuse or accept
// without a look).
type wireAnswer struct {
	status int
	header http.Header
	body   []byte
}

// wireTap keeps the answers of the requests of one call (a context made
// by withTap).
type wireTap struct {
	mu      sync.Mutex
	answers []wireAnswer
}

type tapKey struct{}

// withTap returns ctx with a tap that keeps the answer of every request
// sent with it through a tapped client.
func withTap(ctx context.Context) (context.Context, *wireTap) {
	t := &wireTap{}
	return context.WithValue(ctx, tapKey{}, t), t
}

// last returns the answer of the call's last request; false when none
// was answered (a connection error, a timeout, or nothing sent).
func (t *wireTap) last() (wireAnswer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.answers) == 0 {
		return wireAnswer{}, false
	}
	return t.answers[len(t.answers)-1], true
}

// maxWireBody bounds the body a tap reads (the client's own bound: a
// batch of 1000 IDs is 39 KiB).
const maxWireBody = 1 << 20

// tapped returns a copy of c whose transport gives every answer to the
// tap of its request's context, if any, and passes it on unchanged.
func tapped(c *http.Client) *http.Client {
	cc := *c
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cc.Transport = tapTransport{base: base}
	return &cc
}

type tapTransport struct{ base http.RoundTripper }

func (t tapTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	tap, _ := req.Context().Value(tapKey{}).(*wireTap)
	if err != nil || tap == nil {
		return res, err
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxWireBody+1))
	res.Body.Close()
	if err != nil {
		return nil, err // a body cut short: no answer
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	tap.mu.Lock()
	tap.answers = append(tap.answers, wireAnswer{status: res.StatusCode, header: res.Header, body: body})
	tap.mu.Unlock()
	return res, nil
}
