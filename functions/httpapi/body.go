package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/saga"
)

// decodeBody decodes a JSON request body strictly into v: Content-Type must
// be JSON, the text valid UTF-8 without a lone surrogate escape
// (checkText), unknown fields and trailing data are refused. An empty body
// decodes to v's zero value only when allowEmpty.
func decodeBody(c *fasthttp.RequestCtx, v any, allowEmpty bool) error {
	body := c.PostBody()
	if len(body) > maxBody(c) {
		return Errorf(api.CodeBodyTooLarge, "request body is larger than %d bytes", maxBody(c))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return Errorf(api.CodeInvalidRequest, "a JSON body is required")
	}
	if ct := c.Request.Header.ContentType(); len(ct) > 0 || !allowEmpty {
		mt, _, err := mime.ParseMediaType(string(ct))
		if err != nil || mt != "application/json" {
			return Errorf(api.CodeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	if err := checkText(body); err != nil {
		return err
	}
	if err := strictJSON(body, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(api.CodeInvalidRequest, "malformed JSON body: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errorf(api.CodeInvalidRequest, "malformed JSON body: data after the object")
	}
	return nil
}

func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return "field " + te.Field + " must be " + te.Type.String()
	}
	return err.Error()
}

// idBody is the body of /commit ("reason" is refused with its own message).
type idBody struct {
	ID     *string `json:"id"`
	Reason string  `json:"reason"`
}

func (b *idBody) parseID() (idcodec.ID, error) { return parseID(b.ID) }

// compensateBody is the body of /compensate: the failure envelope of
// shared/saga (saga.Event), whose Validate checks it.
type compensateBody struct {
	ID         *string `json:"id"`
	Reason     string  `json:"reason"`
	EventID    string  `json:"event_id"`
	OccurredAt string  `json:"occurred_at"`
	Source     string  `json:"source"`
	// Traceparent and Tracestate are the failed transaction's trace
	// context (saga.Event).
	Traceparent string `json:"traceparent"`
	Tracestate  string `json:"tracestate"`
}

func (b *compensateBody) parseID() (idcodec.ID, error) { return parseID(b.ID) }

// decodeID decodes the body of a call on one ID (/commit, /compensate)
// into b, parses its "id" and names it in the request's access line.
func decodeID[B interface{ parseID() (idcodec.ID, error) }](c *fasthttp.RequestCtx, log *reqLog, b B) (idcodec.ID, error) {
	if err := decodeBody(c, b, false); err != nil {
		return idcodec.ID{}, err
	}
	id, err := b.parseID()
	if err != nil {
		return id, err
	}
	log.setIDs(id)
	return id, nil
}

// parseID parses a body's "id": a missing one is invalid_request, a
// malformed one invalid_id.
func parseID(id *string) (idcodec.ID, error) {
	if id == nil {
		return idcodec.ID{}, Errorf(api.CodeInvalidRequest, `field "id" is required`)
	}
	return idcodec.Parse(*id)
}

type maxBodyKey struct{}

// maxBody is the body limit Handle stored on the request (Config.MaxBody).
func maxBody(c *fasthttp.RequestCtx) int {
	if n, ok := c.UserValue(maxBodyKey{}).(int); ok {
		return n
	}
	return 64 << 10
}

// maxJSONDepth bounds nesting (the metadata object included).
const maxJSONDepth = 16

// strictJSON walks the tokens of body before it is decoded into v and
// refuses what encoding/json would let through: a key given twice at any
// level (the last would win silently), a top-level key that differs from a
// field of v only by case (encoding/json matches case-insensitively), and
// nesting deeper than maxJSONDepth.
func strictJSON(body []byte, v any) error {
	allowed := jsonFields(v)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // the next string token of an object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return Errorf(api.CodeInvalidRequest, "malformed JSON body: %s", err.Error())
		}
		top := len(stack) - 1
		key, isString := tok.(string)
		if isString && top >= 0 && stack[top].object && stack[top].expect {
			if stack[top].keys[key] {
				return Errorf(api.CodeInvalidRequest, "malformed JSON body: key %q appears twice", key)
			}
			stack[top].keys[key] = true
			stack[top].expect = false
			if top == 0 && allowed != nil && !allowed[key] {
				return Errorf(api.CodeInvalidRequest, "malformed JSON body: unknown field %q", key)
			}
			continue
		}
		if top >= 0 && stack[top].object {
			stack[top].expect = true // a value was read: a key comes next
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxJSONDepth {
				return Errorf(api.CodeInvalidRequest, "malformed JSON body: nested deeper than %d", maxJSONDepth)
			}
			stack = append(stack, frame{object: tok == json.Delim('{'), keys: map[string]bool{}, expect: true})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// jsonFields lists the exact JSON names of a struct pointer's fields.
func jsonFields(v any) map[string]bool {
	switch v.(type) {
	case *generateBody:
		return map[string]bool{"count": true, "timeout_ms": true, "metadata": true}
	case *idBody:
		return map[string]bool{"id": true, "reason": true}
	case *compensateBody:
		return map[string]bool{
			saga.FieldID: true, saga.FieldReason: true, saga.FieldEventID: true,
			saga.FieldOccurredAt: true, saga.FieldSource: true,
			saga.FieldTraceparent: true, saga.FieldTracestate: true,
		}
	}
	return nil
}

// checkText refuses a body whose text encoding/json would change without a
// word while decoding it: bytes that are not UTF-8 (each becomes U+FFFD)
// and a \u escape of a UTF-16 surrogate that is not half of a pair (also
// U+FFFD). What is stored (metadata, a compensation's reason and
// event_id) is then exactly what was sent, and is served back as valid
// JSON.
//
// The scan treats every backslash as the start of an escape: in valid JSON
// a backslash appears inside strings only, and invalid JSON is refused by
// the decoder after this check whatever it says.
func checkText(body []byte) error {
	if !utf8.Valid(body) {
		return Errorf(api.CodeInvalidRequest, "the body is not valid UTF-8")
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		r, ok := hexEscape(body, i)
		if !ok {
			i++ // another escape (\", \\, \n, ...): skip its character
			continue
		}
		i += 5 // the last byte of this \uXXXX
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return Errorf(api.CodeInvalidRequest, "the body holds a lone UTF-16 surrogate escape (\\u%04x)", r)
		case r >= 0xd800 && r <= 0xdbff:
			low, ok := hexEscape(body, i+1)
			if !ok || low < 0xdc00 || low > 0xdfff {
				return Errorf(api.CodeInvalidRequest, "the body holds a lone UTF-16 surrogate escape (\\u%04x)", r)
			}
			i += 6
		}
	}
	return nil
}

// hexEscape decodes the \uXXXX escape at b[i:], if there is one.
func hexEscape(b []byte, i int) (rune, bool) {
	if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[i+2 : i+6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
