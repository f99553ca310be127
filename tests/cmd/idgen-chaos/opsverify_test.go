package main

import (
	"strings"
	"testing"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// TestAuditedOnce: the strict check of the embedded phase finds every
// stored change without exactly one entry, says how it came about, and
// passes an exact record.
func TestAuditedOnce(t *testing.T) {
	id := idcodec.MustCompose(idcodec.Fields{TimestampMS: 1_700_000_000_000, Shard: 1, Counter: 42})
	step := func(st registry.State, actor, reason string) registry.Step {
		return registry.Step{State: st, Actor: actor, Reason: reason}
	}
	pending := step(registry.Pending, "dev", "")
	for _, tc := range []struct {
		name          string
		history       []registry.Step
		commit, event uint8
		commits, comp int // entries in the audit logs
		want          []string
	}{
		{"committed, audited", []registry.Step{pending, step(registry.Committed, "dev", "")}, commitOK, 0, 1, 0, nil},
		{"committed then compensated, both audited", []registry.Step{pending, step(registry.Committed, "dev", ""), step(registry.Compensated, "dev", "x")}, commitOK, eventConfirmed, 1, 1, nil},
		{"pending, nothing audited", []registry.Step{pending}, 0, 0, 0, 0, nil},
		{"commit retried after a 503, no entry", []registry.Step{pending, step(registry.Committed, "dev", "")}, commitUnknown | commitOK, 0, 0, 0,
			[]string{"1 commit steps stored and 0 commit audit entries", "no retry wrote the entry"}},
		{"sweeper compensation, no entry", []registry.Step{pending, step(registry.Compensated, httpapi.ActorSystem, httpapi.ReasonTimeout)}, 0, 0, 0, 0,
			[]string{"1 compensation steps stored and 0 compensation audit entries", "the sweeper"}},
		{"redelivered compensation, no entry", []registry.Step{pending, step(registry.Compensated, "dev", "x")}, 0, eventUnconfirmed | eventConfirmed, 0, 0,
			[]string{"0 compensation audit entries", "redelivery"}},
		{"compensation audited twice", []registry.Step{pending, step(registry.Compensated, "dev", "x")}, 0, eventConfirmed, 0, 2,
			[]string{"1 compensation steps stored and 2 compensation audit entries"}},
		{"commit audited, never stored", []registry.Step{pending}, commitUnknown, 0, 1, 0,
			[]string{"0 commit steps stored and 1 commit audit entries"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuditCounts()
			a.commit[id.String()], a.compensate[id.String()] = tc.commits, tc.comp
			_, _, vs := auditedOnce(id, registry.Record{ID: id, History: tc.history}, tc.commit, tc.event, a)
			var got []string
			for _, v := range vs {
				if v.Kind != vAudit {
					t.Errorf("kind %q, want %q", v.Kind, vAudit)
				}
				got = append(got, v.Detail)
			}
			if len(tc.want) == 0 {
				if len(got) > 0 {
					t.Fatalf("violations %q, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("violations %q, want one", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got[0], w) {
					t.Errorf("%q does not say %q", got[0], w)
				}
			}
		})
	}
}
