package httpapi

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
)

// TestLentRecordsNotReused: a Register that does not answer nil may still
// commit the records it was given (its context ended, the commit comes
// later), so the storage of a single-ID issue lent to it is never handed
// to a later request. keepingRegistry keeps the records of its first call
// and answers it as a timed-out commit; the requests after it must leave
// them as they were.
func TestLentRecordsNotReused(t *testing.T) {
	reg := &keepingRegistry{}
	svc, err := New(Config{Dev: true}, Deps{IDs: &countingIDs{}, Registry: reg, Sealer: nopSealer{}, Audit: nopAuditor{}})
	if err != nil {
		t.Fatal(err)
	}
	post := func() int {
		var req fasthttp.Request
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/generate")
		var c fasthttp.RequestCtx
		c.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
		svc.Handle(&c)
		return c.Response.StatusCode()
	}
	if got := post(); got != fasthttp.StatusServiceUnavailable {
		t.Fatalf("first POST /generate: %d, want 503", got)
	}
	if len(reg.kept) != 1 {
		t.Fatalf("kept %d records, want 1", len(reg.kept))
	}
	want := reg.kept[0]
	for range 100 {
		if got := post(); got != fasthttp.StatusOK {
			t.Fatalf("POST /generate: %d, want 200", got)
		}
	}
	if got := reg.kept[0]; got.ID != want.ID || got.IssuedAtMS != want.IssuedAtMS || len(got.History) != 1 || got.History[0] != want.History[0] {
		t.Errorf("the lent record changed under the registry: %+v, was %+v", got, want)
	}
}

// keepingRegistry keeps the records of its first Register and fails it
// as a commit whose context ended; later ones succeed.
type keepingRegistry struct {
	kept []registry.Record
}

func (r *keepingRegistry) Register(_ context.Context, iss registry.Issue, _, _ int64) (*registry.IdemEntry, error) {
	if r.kept == nil {
		r.kept = iss.Records
		return nil, fmt.Errorf("%w: %w", registry.ErrUnavailable, context.DeadlineExceeded)
	}
	return nil, nil
}

func (r *keepingRegistry) Get(context.Context, idcodec.ID) (registry.Record, error) {
	return registry.Record{}, registry.ErrNotFound
}

func (r *keepingRegistry) Transition(context.Context, idcodec.ID, registry.Change) (registry.Record, registry.Outcome, error) {
	return registry.Record{}, 0, registry.ErrNotFound
}

// countingIDs hands out IDs of consecutive counters.
type countingIDs struct{ next uint64 }

func (s *countingIDs) NextN(_ context.Context, n int, dst []idcodec.ID) ([]idcodec.ID, error) {
	for range n {
		s.next++
		id, err := idcodec.Compose(idcodec.Fields{TimestampMS: 1 << 40, Counter: s.next})
		if err != nil {
			return dst, err
		}
		dst = append(dst, id)
	}
	return dst, nil
}

func (s *countingIDs) Stats() generator.Stats { return generator.Stats{} }

type nopSealer struct{}

func (nopSealer) Seal(context.Context, string, []byte, []byte) ([]byte, error) { return nil, nil }
func (nopSealer) Open(context.Context, string, []byte, []byte) ([]byte, error) { return nil, nil }
func (nopSealer) Erase(context.Context, string) error                          { return nil }

type nopAuditor struct{}

func (nopAuditor) Record(audit.Event) error { return nil }
func (nopAuditor) Healthy() error           { return nil }

var (
	_ Registry   = (*keepingRegistry)(nil)
	_ IDSource   = (*countingIDs)(nil)
	_ Sealer     = nopSealer{}
	_ Auditor    = nopAuditor{}
	_ Membership = StaticMembership(nil)
)
