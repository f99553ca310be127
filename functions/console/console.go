// Package console serves the operator console: one page, its script and its
// style sheet, embedded in the binary (no CDN, no build step), at "/" and
// "/console/...".
//
// The page holds no data and grants nothing: everything it shows it reads
// from the HTTP API with the caller's bearer token (kept in the browser's
// sessionStorage only, never in a URL or a cookie), so it shows exactly
// what the token's scopes allow and the API refuses the rest. Every answer
// carries a Content-Security-Policy without 'unsafe-inline' (the page has
// no inline script or style), frame-ancestors 'none',
// X-Content-Type-Options: nosniff and no-referrer.
//
// Owns matches the raw request path exactly against the few asset paths, so
// the console never shadows an API route and no path normalisation can
// reach it under another name.
package console

import (
	"embed"

	"github.com/valyala/fasthttp"
)

//go:embed assets
var assets embed.FS

// ContentSecurityPolicy is the policy of every console answer: same-origin
// script, style, images and API calls only; no inline code, no framing, no
// plugins, no form posts elsewhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

type asset struct {
	body        []byte
	contentType string
}

// files maps the raw request path to its asset.
var files = func() map[string]asset {
	m := map[string]asset{}
	for path, f := range map[string]struct{ file, ctype string }{
		"/":                    {"assets/index.html", "text/html; charset=utf-8"},
		"/console/app.js":      {"assets/app.js", "text/javascript; charset=utf-8"},
		"/console/app.css":     {"assets/app.css", "text/css; charset=utf-8"},
		"/console/favicon.svg": {"assets/favicon.svg", "image/svg+xml"},
	} {
		b, err := assets.ReadFile(f.file)
		if err != nil {
			panic("console: missing embedded asset " + f.file)
		}
		m[path] = asset{body: b, contentType: f.ctype}
	}
	return m
}()

// Owns reports whether rawPath (the path as the client sent it) is a
// console asset.
func Owns(rawPath []byte) bool {
	_, ok := files[string(rawPath)]
	return ok
}

// Serve answers a request for a console asset (Owns was true): GET or HEAD,
// else 405 with Allow.
func Serve(c *fasthttp.RequestCtx) {
	h := &c.Response.Header
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	a, ok := files[string(c.URI().PathOriginal())]
	if !ok {
		c.SetStatusCode(fasthttp.StatusNotFound)
		c.SetContentType("application/json")
		c.SetBodyString(`{"error":{"code":"not_found","message":"no console asset here"}}` + "\n")
		return
	}
	if !c.IsGet() && !c.IsHead() {
		h.Set("Allow", "GET, HEAD")
		c.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		c.SetContentType("application/json")
		c.SetBodyString(`{"error":{"code":"method_not_allowed","message":"the console answers GET only"}}` + "\n")
		return
	}
	c.SetContentType(a.contentType)
	c.SetBody(a.body) // fasthttp sends no body for HEAD
}
