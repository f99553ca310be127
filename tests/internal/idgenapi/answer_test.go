package idgenapi

import (
	"strings"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
)

func TestParseGenerated(t *testing.T) {
	a := idcodec.MustCompose(idcodec.Fields{TimestampMS: 1, Counter: 1})
	b := idcodec.MustCompose(idcodec.Fields{TimestampMS: 1, Counter: 2})
	cases := []struct {
		name  string
		body  string
		count int
		ids   int
		bad   string // substring of bad; "" = within the contract
	}{
		{"single", `{"id":"` + a.String() + `"}`, 0, 1, ""},
		{"batch", `{"ids":["` + a.String() + `","` + b.String() + `"]}`, 2, 2, ""},
		{"not JSON", `<html>`, 0, 0, "not JSON"},
		{"single without id", `{"ids":[]}`, 0, 0, "without \"id\""},
		{"too few", `{"ids":["` + a.String() + `"]}`, 2, 1, "asked 2 IDs, got 1"},
		{"not increasing", `{"ids":["` + b.String() + `","` + a.String() + `"]}`, 2, 2, "increasing order"},
		{"not an ID", `{"id":"not-an-id"}`, 0, 0, "canonical"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids, bad := ParseGenerated([]byte(c.body), c.count)
			if len(ids) != c.ids {
				t.Errorf("%d IDs, want %d", len(ids), c.ids)
			}
			if c.bad == "" && bad != "" || c.bad != "" && !strings.Contains(bad, c.bad) {
				t.Errorf("bad = %q, want %q", bad, c.bad)
			}
		})
	}
}

func TestErrorCodeAndSample(t *testing.T) {
	if got := ErrorCode([]byte(`{"error":{"code":"unavailable","message":"x"}}`)); got != "unavailable" {
		t.Errorf("ErrorCode = %q", got)
	}
	if got := ErrorCode([]byte(`oops`)); got != "" {
		t.Errorf("ErrorCode of a non-JSON body = %q", got)
	}
	m := []byte("# HELP x\nidgen_a 3\nidgen_ab 4\nidgen_b{l=\"1\"} 5\n")
	if v, err := Sample(m, "idgen_ab"); err != nil || v != 4 {
		t.Errorf("Sample = %v, %v; want 4", v, err)
	}
	if _, err := Sample(m, "idgen_b"); err == nil {
		t.Error("Sample of a labelled metric found an unlabelled one")
	}
}

// TestMixedCounts: as many batches and singles as asked, nothing else.
func TestMixedCounts(t *testing.T) {
	counts := MixedCounts(3, 5)
	kinds := map[int]int{}
	for _, n := range counts {
		kinds[n]++
	}
	if len(counts) != 8 || kinds[1000] != 3 || kinds[0] != 5 {
		t.Fatalf("MixedCounts(3, 5) = %v", counts)
	}
}
