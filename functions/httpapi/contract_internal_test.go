package httpapi

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/idgen/idgen/api"
)

// errorAnswers reads, from an OpenAPI document, the error code enum and
// the error answers of components.responses: each one's x-status and the
// codes its body may carry.
func errorAnswers(t *testing.T, doc []byte) (enum []string, answers map[string]errorAnswer) {
	t.Helper()
	var d struct {
		Components struct {
			Schemas struct {
				ErrorCode struct {
					Enum []string `json:"enum"`
				} `json:"ErrorCode"`
			} `json:"schemas"`
			Responses map[string]struct {
				Status  int `json:"x-status"`
				Content map[string]struct {
					Schema struct {
						AllOf []struct {
							Properties struct {
								Error struct {
									Properties struct {
										Code struct {
											Enum []string `json:"enum"`
										} `json:"code"`
									} `json:"properties"`
								} `json:"error"`
							} `json:"properties"`
						} `json:"allOf"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	answers = map[string]errorAnswer{}
	for name, r := range d.Components.Responses {
		a := errorAnswer{status: r.Status}
		for _, part := range r.Content["application/json"].Schema.AllOf {
			a.codes = append(a.codes, part.Properties.Error.Properties.Code.Enum...)
		}
		answers[name] = a
	}
	return d.Components.Schemas.ErrorCode.Enum, answers
}

type errorAnswer struct {
	status int
	codes  []string
}

// TestErrorCodesAreDocumented: the error code enum of api/openapi.json is
// the code table of errors.go, and every error answer of its components
// carries only codes of its x-status; every code has an answer.
func TestErrorCodesAreDocumented(t *testing.T) {
	enum, answers := errorAnswers(t, api.Document())
	if got, want := slices.Sorted(slices.Values(enum)), slices.Sorted(slices.Values(api.Codes())); !slices.Equal(got, want) {
		t.Errorf("components.schemas.ErrorCode.enum is %v; errors.go's codes are %v", got, want)
	}
	answered := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(answers)) {
		a := answers[name]
		if len(a.codes) == 0 {
			t.Errorf("components.responses.%s narrows no error code", name)
		}
		for _, code := range a.codes {
			answered[code] = true
			if status, ok := api.Status(code); !ok || status != a.status {
				t.Errorf("components.responses.%s (x-status %d) carries %q, whose status is %d", name, a.status, code, status)
			}
		}
	}
	for _, code := range api.Codes() {
		if !answered[code] {
			t.Errorf("no answer of components.responses carries the code %q", code)
		}
	}
}
