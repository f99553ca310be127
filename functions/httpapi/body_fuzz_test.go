package httpapi

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// escapes matches, left to right, the escapes of JSON text: \uXXXX or a
// backslash and the character it escapes.
var escapes = regexp.MustCompile(`\\(?:u[0-9a-fA-F]{4}|[^u])`)

// textOK is the test's own statement of checkText's rule, through
// unicode/utf16: the text is UTF-8, and every run of adjacent \u escapes
// is UTF-16 that decodes and encodes back to itself (a lone surrogate
// decodes to U+FFFD).
func textOK(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	var run []uint16
	end := -1
	flush := func() bool {
		ok := slices.Equal(utf16.Encode(utf16.Decode(run)), run)
		run = run[:0]
		return ok
	}
	for _, m := range escapes.FindAllIndex(b, -1) {
		if m[0] != end && !flush() {
			return false
		}
		end = m[1]
		if b[m[0]+1] != 'u' {
			end = -1 // not a \u escape: the run ends
			continue
		}
		var u uint16
		for _, c := range b[m[0]+2 : m[1]] {
			switch {
			case c <= '9':
				u = u<<4 | uint16(c-'0')
			case c >= 'a':
				u = u<<4 | uint16(c-'a'+10)
			default:
				u = u<<4 | uint16(c-'A'+10)
			}
		}
		run = append(run, u)
	}
	return flush()
}

// FuzzCheckText: checkText never panics, and on valid JSON it refuses
// exactly what textOK refuses; what it accepts decodes with encoding/json
// to strings that are valid UTF-8.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":"\ud800"}`, `{"a":"\udc00"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\\ud800"}`, `{"a":"\\\ud800"}`,
		`{"a":"\ud83d\u0041"}`, `{"a":"\uD83D\uDE00\uD83D"}`, `{"\udfff":1}`, `{"a":"\u12"}`, `"\`, "{\"a\":\"\xff\"}",
		`["\ud800\\udc00"]`, `{"a":"\ufffd"}`, `{"a":"\"\ud800"}`, `1E700`, `{"a":1E700}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkText(b)
		if !json.Valid(b) {
			return
		}
		if want := textOK(b); (err == nil) != want {
			t.Fatalf("checkText(%q) = %v, want ok=%v", b, err, want)
		}
		if err != nil {
			return
		}
		// UseNumber: a number beyond float64 ("1E700") is valid JSON
		// text; checkText judges strings, not numbers.
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("valid JSON %q does not decode: %v", b, err)
		}
		out, _ := json.Marshal(v)
		if !utf8.Valid(out) {
			t.Fatalf("accepted %q re-encodes as invalid UTF-8 %q", b, out)
		}
	})
}
