package idcodec

import (
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; whatever it accepts formats back to the
// same text (lowercased) and re-composes from its fields.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"019abbb9-b400-8007-8200-0000000003e9",
		"019ABBB9-B400-8007-8200-0000000003E9",
		"f47ac10b-58cc-4372-a567-0e02b2c3d479",
		"", "--------", "019abbb9-b400-8007-8200-0000000003e", "019abbb9b4008007820000000000003e9000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		if got := id.String(); got != strings.ToLower(s) {
			t.Fatalf("String() = %q for input %q", got, s)
		}
		if !id.Valid() {
			t.Fatalf("accepted invalid %q", s)
		}
		back, err := Compose(id.Decompose())
		if err != nil || back != id {
			t.Fatalf("Compose(Decompose()) = %v, %v for %q", back, err, s)
		}
	})
}
