package apitest_test

import (
	"strings"
	"testing"

	"github.com/idgen/idgen/api/apitest"
)

// BenchmarkCheck: Check against kin-openapi's own response check (the
// baseline, "kin"), on the answers an end-to-end suite receives most.
func BenchmarkCheck(b *testing.B) {
	v, err := apitest.Default()
	if err != nil {
		b.Fatal(err)
	}
	batch := []byte(`{"ids":[` + strings.Repeat(`"`+id+`",`, 999) + `"` + id + `"]}`)
	for _, bc := range []struct {
		name string
		x    apitest.Exchange
	}{
		{"single", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header(), Body: []byte(`{"id":"` + id + `"}`)}},
		{"batch1000", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header(), Body: batch}},
		{"unavailable", apitest.Exchange{Method: "POST", Target: "/generate", Status: 503, Header: header("Retry-After", "1"), Body: errBody("unavailable")}},
	} {
		if err := v.Check(bc.x); err != nil {
			b.Fatal(err)
		}
		for _, impl := range []struct {
			name  string
			check func(apitest.Exchange) error
		}{{"compiled", v.Check}, {"kin", v.ReferenceCheck}} {
			b.Run(bc.name+"/"+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						_ = impl.check(bc.x)
					}
				})
			})
		}
	}
}
