package optionstest

import (
	"errors"
	"slices"
	"testing"
)

// positive is valid when it is above zero; checked records every value
// Validate saw.
type positive int

var checked []positive

func (p positive) Validate() error {
	checked = append(checked, p)
	if p <= 0 {
		return errors.New("not positive")
	}
	return nil
}

// TestRun: Run validates every case, in order, each in a subtest named by
// the case; the cases agree with Validate, so every subtest passes.
func TestRun(t *testing.T) {
	checked = nil
	Run(t, []Case[positive]{
		{"one", 1, true},
		{"zero", 0, false},
		{"negative", -1, false},
	})
	if want := []positive{1, 0, -1}; !slices.Equal(checked, want) {
		t.Fatalf("Validate saw %v, want %v", checked, want)
	}
}
