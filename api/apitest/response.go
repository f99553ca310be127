package apitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemas are the document's response schemas (bodies and headers),
// compiled once by New: kin-openapi's own response check compiles a
// schema of an OpenAPI 3.1 document on every use, milliseconds per answer,
// which a suite's load cannot afford. The map is read-only after New.
type schemas map[*openapi3.Schema]*jsonschema.Schema

// docURL names the document among the compiler's resources: the schemas'
// references (#/components/schemas/...) resolve in it.
const docURL = "https://idgen.test/openapi.json"

// compileSchemas compiles the schema of every header and body of every
// answer of ops, with the 2020-12 dialect of an OpenAPI 3.1 document and
// the string formats kin-openapi asserts (openapi3.SchemaStringFormats).
func compileSchemas(doc []byte, ops []*openapi3.Operation) (schemas, error) {
	raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	// A format the document uses is asserted when kin-openapi knows it
	// (its built-in ones and those a test defines); any other, jsonschema's
	// own included, is an annotation, as kin-openapi has it.
	for name := range formatsOf(raw, map[string]bool{}) {
		c.RegisterFormat(&jsonschema.Format{Name: name, Validate: func(v any) error {
			s, ok := v.(string)
			f := openapi3.SchemaStringFormats[name]
			if !ok || f == nil {
				return nil
			}
			return f.Validate(s)
		}})
	}
	if err := c.AddResource(docURL, raw); err != nil {
		return nil, err
	}
	out := schemas{}
	add := func(where string, s *openapi3.SchemaRef) error {
		if s == nil || s.Value == nil || out[s.Value] != nil {
			return nil
		}
		sch, err := compileOne(c, len(out), s.Value)
		if err != nil {
			return fmt.Errorf("apitest: compile the schema of %s: %w", where, err)
		}
		out[s.Value] = sch
		return nil
	}
	for _, op := range ops {
		for status, r := range op.Responses.Map() {
			if r.Value == nil {
				continue
			}
			for name, h := range r.Value.Headers {
				if h.Value != nil {
					if err := add(op.OperationID+" "+status+" header "+name, h.Value.Schema); err != nil {
						return nil, err
					}
				}
			}
			for mt, m := range r.Value.Content {
				if err := add(op.OperationID+" "+status+" "+mt, m.Schema); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// compileOne compiles s as resource n; its references point into the
// document.
func compileOne(c *jsonschema.Compiler, n int, s *openapi3.Schema) (*jsonschema.Schema, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	absRefs(v)
	url := "https://idgen.test/schemas/" + strconv.Itoa(n) + ".json"
	if err := c.AddResource(url, v); err != nil {
		return nil, err
	}
	return c.Compile(url)
}

// formatsOf adds the names of the formats v uses to seen.
func formatsOf(v any, seen map[string]bool) map[string]bool {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "format" {
				seen[s] = true
			}
			formatsOf(x, seen)
		}
	case []any:
		for _, x := range v {
			formatsOf(x, seen)
		}
	}
	return seen
}

// absRefs makes every local reference ("#/components/...") of a schema
// taken out of the document point into the document.
func absRefs(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "$ref" && strings.HasPrefix(s, "#") {
				v[k] = docURL + s
				continue
			}
			absRefs(x)
		}
	case []any:
		for _, x := range v {
			absRefs(x)
		}
	}
}

// checkResponse holds the answer x to the document's response r: its
// documented headers are there and match their schemas, and, unless
// headersOnly, its Content-Type is one r has and the body matches that
// media type's schema. It reports as openapi3filter.ValidateResponse does
// (the tests hold the two to the same verdicts).
func (v *Validator) checkResponse(r *openapi3.Response, x Exchange, headersOnly bool) error {
	names := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		if !strings.EqualFold(k, "Content-Type") {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if err := v.checkHeader(name, r.Headers[name].Value, x.Header); err != nil {
			return err
		}
	}
	if headersOnly || len(r.Content) == 0 {
		return nil
	}
	ct := x.Header.Get("Content-Type")
	mt := r.Content.Get(ct)
	if mt == nil {
		return fmt.Errorf("response header Content-Type has unexpected value: %q", ct)
	}
	if mt.Schema == nil || mt.Schema.Value == nil {
		return nil
	}
	body, err := decodeBody(ct, x.Body)
	if err != nil {
		return fmt.Errorf("failed to decode response body: %w", err)
	}
	if err := v.validate(mt.Schema.Value, body); err != nil {
		return fmt.Errorf("response body doesn't match schema%s: %w", schemaName(mt.Schema), err)
	}
	return nil
}

// checkHeader checks one documented header of an answer.
func (v *Validator) checkHeader(name string, h *openapi3.Header, header http.Header) error {
	if h == nil {
		return fmt.Errorf("response header %q has not been resolved", name)
	}
	values, found := header[http.CanonicalHeaderKey(name)]
	if !found {
		if h.Required {
			return fmt.Errorf("response header %q missing", name)
		}
		return nil
	}
	if h.Schema == nil || h.Schema.Value == nil {
		return nil
	}
	var value any
	if len(values) > 0 {
		var err error
		if value, err = headerValue(values[0], h.Schema.Value); err != nil {
			return fmt.Errorf("unable to decode header %q value: %w", name, err)
		}
	}
	if err := v.validate(h.Schema.Value, value); err != nil {
		return fmt.Errorf("response header %q doesn't match schema: %w", name, err)
	}
	return nil
}

// headerValue reads a header of the simple style as the first of its
// schema's primitive types it parses as; a value of none is an error, an
// empty value of a type other than string is no value.
func headerValue(raw string, s *openapi3.Schema) (any, error) {
	types := s.Type.Slice()
	if len(types) == 0 {
		return raw, nil
	}
	var err error
	for _, t := range types {
		if raw == "" && t != openapi3.TypeString {
			return nil, nil
		}
		switch t {
		case openapi3.TypeString:
			return raw, nil
		case openapi3.TypeInteger:
			var n int64
			if n, err = strconv.ParseInt(raw, 10, 64); err == nil {
				return json.Number(strconv.FormatInt(n, 10)), nil
			}
		case openapi3.TypeNumber:
			var f float64
			if strings.ContainsFunc(raw, func(r rune) bool { return !strings.ContainsRune("+-.0123456789eE", r) }) {
				err = strconv.ErrSyntax
			} else if f, err = strconv.ParseFloat(raw, 64); err == nil {
				return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
			}
		case openapi3.TypeBoolean:
			var b bool
			if b, err = strconv.ParseBool(raw); err == nil {
				return b, nil
			}
		default:
			err = fmt.Errorf("schema has non primitive type %s", t)
		}
	}
	return nil, fmt.Errorf("%q: %w", raw, err)
}

// decodeBody reads a body of the media type ct: JSON for application/json
// and +json types, else the text itself.
func decodeBody(ct string, body []byte) (any, error) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, err
	}
	if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return string(body), nil
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(body))
}

// validate checks value against s's compiled form.
func (v *Validator) validate(s *openapi3.Schema, value any) error {
	sch := v.schemas[s]
	if sch == nil {
		return errors.New("apitest: a schema New did not compile")
	}
	return sch.Validate(value)
}

func schemaName(s *openapi3.SchemaRef) string {
	if s.Ref == "" {
		return ""
	}
	return " " + s.Ref
}
