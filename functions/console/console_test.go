package console

import (
	"regexp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func request(method, path string) *fasthttp.RequestCtx {
	var c fasthttp.RequestCtx
	c.Request.Header.SetMethod(method)
	c.Request.SetRequestURI(path)
	return &c
}

// TestOwnsExactPaths: only the asset paths as sent belong to the console;
// a variant that a normaliser would fold into one (a double slash, a dot
// segment, an encoding, a query-less prefix) stays with the API.
func TestOwnsExactPaths(t *testing.T) {
	for _, p := range []string{"/", "/console/app.js", "/console/app.css", "/console/favicon.svg"} {
		if !Owns([]byte(p)) {
			t.Errorf("Owns(%q) = false", p)
		}
	}
	for _, p := range []string{"", "//", "/console", "/console/", "/console//app.js", "/console/./app.js", "/console/%61pp.js",
		"/console/app.js/", "/console/../generate", "/index.html", "/generate", "/console/assets/index.html"} {
		if Owns([]byte(p)) {
			t.Errorf("Owns(%q) = true", p)
		}
	}
}

// TestServeHeaders: every answer carries the CSP (without unsafe-inline),
// nosniff and no framing; GET and HEAD serve, other methods get 405 JSON.
func TestServeHeaders(t *testing.T) {
	if strings.Contains(ContentSecurityPolicy, "unsafe") || !strings.Contains(ContentSecurityPolicy, "frame-ancestors 'none'") {
		t.Fatalf("policy %q", ContentSecurityPolicy)
	}
	for path, ctype := range map[string]string{"/": "text/html", "/console/app.js": "text/javascript", "/console/app.css": "text/css", "/console/favicon.svg": "image/svg+xml"} {
		for _, m := range []string{"GET", "HEAD", "POST", "DELETE"} {
			c := request(m, path)
			Serve(c)
			h := &c.Response.Header
			if string(h.Peek("Content-Security-Policy")) != ContentSecurityPolicy || string(h.Peek("X-Content-Type-Options")) != "nosniff" {
				t.Errorf("%s %s: headers %s", m, path, h.String())
			}
			switch m {
			case "GET", "HEAD":
				if c.Response.StatusCode() != 200 || !strings.HasPrefix(string(h.ContentType()), ctype) {
					t.Errorf("%s %s: %d %s", m, path, c.Response.StatusCode(), h.ContentType())
				}
				if m == "GET" && len(c.Response.Body()) == 0 {
					t.Errorf("GET %s: empty body", path)
				}
			default:
				if c.Response.StatusCode() != 405 || string(h.Peek("Allow")) != "GET, HEAD" || !strings.Contains(string(c.Response.Body()), `"method_not_allowed"`) {
					t.Errorf("%s %s: %d Allow %q %s", m, path, c.Response.StatusCode(), h.Peek("Allow"), c.Response.Body())
				}
			}
		}
	}
}

// TestNoInlineCode: the page holds no inline script, no inline style and
// no event-handler attribute, which the policy would block.
func TestNoInlineCode(t *testing.T) {
	page := string(files["/"].body)
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), // a script element with content
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`javascript:`),
	} {
		if m := re.FindString(page); m != "" {
			t.Errorf("index.html holds inline code: %q", m)
		}
	}
	for _, s := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(s, `src="/console/`) {
			t.Errorf("script element %q does not load a console asset", s)
		}
	}
}
