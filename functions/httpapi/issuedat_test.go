package httpapi_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/idcodec"
)

// slowIDs is an ID source whose every NextN first waits, as one that has
// to claim a range does.
type slowIDs struct {
	httpapi.IDSource
	wait time.Duration
}

func (s slowIDs) NextN(ctx context.Context, n int, dst []idcodec.ID) ([]idcodec.ID, error) {
	time.Sleep(s.wait) // the claim the source waits for
	return s.IDSource.NextN(ctx, n, dst)
}

// TestIssuedAtNotBeforeID: when taking the IDs takes a while (a range
// claim), the record's issued_at and its history step are still at or
// after the time in the ID, and the deadline counts from issued_at.
func TestIssuedAtNotBeforeID(t *testing.T) {
	h := serveStack(t, newStackDeps(t, newTestCore(t), httpapi.Config{Dev: true}, nil, func(d *httpapi.Deps) {
		d.IDs = slowIDs{IDSource: d.IDs, wait: 20 * time.Millisecond}
	}))
	for _, body := range []string{"", `{"count":3,"timeout_ms":60000}`} {
		r := h.post(t, "/generate", body)
		if r.status != 200 {
			t.Fatalf("generate %q: %s", body, r)
		}
		var ans struct {
			ID  string   `json:"id"`
			IDs []string `json:"ids"`
		}
		if err := json.Unmarshal(r.body, &ans); err != nil {
			t.Fatal(err)
		}
		for _, text := range append(ans.IDs, ans.ID) {
			if text == "" {
				continue
			}
			id, err := idcodec.Parse(text)
			if err != nil {
				t.Fatal(err)
			}
			v := h.view(t, id.String())
			issued, err := time.Parse(time.RFC3339Nano, *v.IssuedAt)
			if err != nil {
				t.Fatal(err)
			}
			stamped := time.UnixMilli(int64(id.Decompose().TimestampMS))
			if issued.Before(stamped) || v.History[0].At != *v.IssuedAt {
				t.Errorf("%s: issued_at %s before the ID's time %s (history %s)", id, issued.Format(time.RFC3339Nano), stamped.Format(time.RFC3339Nano), v.History[0].At)
			}
			if v.Deadline != "" {
				deadline, err := time.Parse(time.RFC3339Nano, v.Deadline)
				if err != nil || deadline.Sub(issued) != time.Minute {
					t.Errorf("%s: deadline %s is not issued_at + 60 s (%v)", id, v.Deadline, err)
				}
			}
		}
	}
}
