package registrytest

import (
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
)

// ConfigCase is one configuration of a backend and whether its Validate
// accepts it.
type ConfigCase[C any] struct {
	Name  string
	Cfg   C
	Valid bool
}

// ValidateConfig checks Validate of a backend's Config, as subtests: the
// bounds every backend shares, on configure(shard, maxBatch) (the zero
// configuration, the largest shard and one above it, a negative MaxBatch),
// then the backend's own cases.
func ValidateConfig[C interface{ Validate() error }](t *testing.T, configure func(shard uint8, maxBatch int) C, own ...ConfigCase[C]) {
	cases := append([]ConfigCase[C]{
		{"zero", configure(0, 0), true},
		{"max shard", configure(idcodec.MaxShard, 0), true},
		{"shard too big", configure(idcodec.MaxShard+1, 0), false},
		{"negative batch", configure(0, -1), false},
	}, own...)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			if err := tc.Cfg.Validate(); (err == nil) != tc.Valid {
				t.Fatalf("Validate = %v, want valid %v", err, tc.Valid)
			}
		})
	}
}
