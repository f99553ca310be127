// Package optionstest checks the Validate method of an options or
// settings type against a table of cases: every case runs as a subtest,
// and Validate must accept exactly the cases marked OK.
package optionstest

import "testing"

// Validator is an options or settings type whose Validate reports values
// that cannot be used (nil for a usable one).
type Validator interface{ Validate() error }

// Case is one value of O and whether its Validate returns nil.
type Case[O Validator] struct {
	Name string
	Opts O
	OK   bool
}

// Run runs each case as a subtest of t named by its Name; a subtest fails
// when Validate returns an error for an OK case, or nil for another.
func Run[O Validator](t *testing.T, cases []Case[O]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			if err := tc.Opts.Validate(); (err == nil) != tc.OK {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.OK)
			}
		})
	}
}
