package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/valyala/fasthttp"
)

// ErrNotHTTPEvent means a Lambda event is not an API Gateway HTTP API
// request of payload format 2.0 (no HTTP method, or another version): the
// function was wired to the wrong trigger. It is the only error
// HandleAPIGatewayV2 returns; every bad client request gets its 4xx answer.
var ErrNotHTTPEvent = errors.New("httpapi: not an API Gateway HTTP API v2 event")

// HandleAPIGatewayV2 serves one API Gateway HTTP API (payload format 2.0)
// event through Handle, the handler of the fasthttp server: the event
// becomes a fasthttp request, Handle answers it, and the answer becomes the
// v2 response. There is no second implementation of any route.
//
// What the fasthttp server does before Handle runs is done here: a body
// larger than MaxBody, or one that API Gateway marked base64 but is not,
// is refused through HandleServerError (413 and 400, JSON errors, request ID
// and metrics as on the server). The client address comes from
// requestContext.http.sourceIp; a request without X-Request-ID takes API
// Gateway's requestContext.requestId, so the ID in the logs is the one in
// API Gateway's access log.
//
// The path is rawPath as API Gateway sends it: the API is meant to be
// served on the $default stage (a named stage prefixes every path and no
// route would match). ctx, the invocation's, is not passed into Handle:
// like the server's, each request derives its own Config.RequestTimeout, so
// keep that below the function's timeout.
//
// Text answers (JSON, text/*) are returned as they are, others base64
// encoded; repeated headers are joined with commas and Set-Cookie headers
// go into Cookies, as payload format 2.0 wants.
func (s *Service) HandleAPIGatewayV2(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	if ev.RequestContext.HTTP.Method == "" || (ev.Version != "" && ev.Version != "2.0") {
		return events.APIGatewayV2HTTPResponse{}, fmt.Errorf("%w (version %q, method %q)", ErrNotHTTPEvent, ev.Version, ev.RequestContext.HTTP.Method)
	}
	var req fasthttp.Request
	body, bodyErr := eventRequest(&req, ev)

	var c fasthttp.RequestCtx
	c.Init(&req, sourceAddr(ev.RequestContext.HTTP.SourceIP), nil)
	switch {
	case bodyErr != nil:
		s.HandleServerError(&c, bodyErr)
	case len(body) > s.cfg.MaxBody:
		// The fasthttp server refuses such a body on every route before
		// Handle runs (MaxRequestBodySize); so does the adapter.
		s.HandleServerError(&c, fasthttp.ErrBodyTooLarge)
	default:
		c.Request.SetBodyRaw(body)
		s.Handle(&c)
	}
	out := eventResponse(&c.Response)
	if c.IsHead() {
		// As the server: a HEAD answer has headers only.
		out.Body, out.IsBase64Encoded = "", false
	}
	return out, nil
}

// eventRequest fills req from ev, all but the body, which it returns
// decoded (an error when API Gateway's base64 is malformed).
func eventRequest(req *fasthttp.Request, ev events.APIGatewayV2HTTPRequest) ([]byte, error) {
	path := ev.RawPath
	if path == "" {
		path = ev.RequestContext.HTTP.Path
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	uri := escapeTarget(path)
	if ev.RawQueryString != "" {
		uri += "?" + ev.RawQueryString
	}
	req.Header.SetMethod(ev.RequestContext.HTTP.Method)
	req.SetRequestURI(uri)
	for k, v := range ev.Headers {
		switch strings.ToLower(k) {
		case "content-length", "transfer-encoding", "connection":
			// Framing of API Gateway's own request, not of this one.
			continue
		case "cookie":
			if len(ev.Cookies) > 0 {
				continue // the cookies field is authoritative
			}
		}
		req.Header.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	if len(req.Header.Host()) == 0 && ev.RequestContext.DomainName != "" {
		req.Header.SetHost(ev.RequestContext.DomainName)
	}
	if len(req.Header.Peek("X-Request-ID")) == 0 && ev.RequestContext.RequestID != "" {
		req.Header.Set("X-Request-ID", ev.RequestContext.RequestID)
	}
	if ev.RequestContext.HTTP.UserAgent != "" && len(req.Header.UserAgent()) == 0 {
		req.Header.SetUserAgent(ev.RequestContext.HTTP.UserAgent)
	}
	if !ev.IsBase64Encoded {
		return []byte(ev.Body), nil
	}
	body, err := base64.StdEncoding.DecodeString(ev.Body)
	if err != nil {
		return nil, fmt.Errorf("base64 body: %w", err)
	}
	return body, nil
}

// escapeTarget percent-encodes what cannot stand in a request line's path
// (controls, spaces, non-ASCII, '?' and '#'), so a decoded rawPath cannot
// spill into the query or be cut. An already encoded path is unchanged.
func escapeTarget(p string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		ch := p[i]
		if ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#' {
			if b.Len() == 0 {
				b.Grow(len(p) + 8)
				b.WriteString(p[:i])
			}
			b.WriteByte('%')
			b.WriteByte(hex[ch>>4])
			b.WriteByte(hex[ch&15])
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(ch)
		}
	}
	if b.Len() == 0 {
		return p
	}
	return b.String()
}

// sourceAddr is the fake remote address Handle sees as the client's (audit
// source). A missing or malformed sourceIp gives the zero address.
func sourceAddr(ip string) net.Addr {
	parsed := net.ParseIP(ip)
	if parsed == nil {
		return nil
	}
	return &net.TCPAddr{IP: parsed}
}

// eventResponse converts Handle's answer to a payload format 2.0 response.
func eventResponse(res *fasthttp.Response) events.APIGatewayV2HTTPResponse {
	out := events.APIGatewayV2HTTPResponse{StatusCode: res.StatusCode(), Headers: map[string]string{}}
	for k, v := range res.Header.All() {
		name := string(k)
		switch strings.ToLower(name) {
		case "content-length", "transfer-encoding", "connection":
			continue // API Gateway frames the answer itself
		case "set-cookie":
			out.Cookies = append(out.Cookies, string(v))
			continue
		}
		if prev, ok := out.Headers[name]; ok {
			out.Headers[name] = prev + "," + string(v)
		} else {
			out.Headers[name] = string(v)
		}
	}
	body := res.Body()
	if len(body) == 0 {
		return out
	}
	if isText(string(res.Header.ContentType()), body) {
		out.Body = string(body)
	} else {
		out.Body, out.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	}
	return out
}

// isText reports whether a body of this media type goes to API Gateway as a
// string: JSON and text that is valid UTF-8. Anything else is base64.
func isText(contentType string, body []byte) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	text := strings.HasPrefix(mt, "text/") || mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		mt == "application/xml" || strings.HasSuffix(mt, "+xml") || mt == "application/javascript"
	return text && utf8.Valid(body)
}
