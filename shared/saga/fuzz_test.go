package saga_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// FuzzEventFromFields feeds arbitrary stream entry fields through parsing
// and validation: never a panic; an accepted event has a parseable ID and a
// reason; a refusal is ErrMalformed with a bounded message.
func FuzzEventFromFields(f *testing.F) {
	good := idcodec.MustCompose(idcodec.Fields{TimestampMS: sagatest.TestMS, Worker: 1, Shard: 1, Counter: 1}).String()
	f.Add(good, "card declined", "evt-1", "2026-01-02T03:04:05Z", "payments")
	f.Add("", "", "", "", "")
	f.Add(strings.ToUpper(good), "r", "", "not a time", "a b")
	f.Add("6ba7b810-9dad-41d1-80b4-00c04fd430c8", strings.Repeat("x", 300), "\xff", "", "")
	f.Fuzz(func(t *testing.T, id, reason, eventID, occurredAt, source string) {
		fields := map[string]any{"id": id, "reason": reason, "event_id": eventID, "occurred_at": occurredAt, "source": source, "extra": 1}
		ev, err := saga.EventFromFields(fields, "stream")
		if err != nil {
			t.Fatalf("string fields refused: %v", err)
		}
		parsed, err := ev.Validate()
		if err != nil {
			if !errors.Is(err, saga.ErrMalformed) || len(err.Error()) > 400 {
				t.Fatalf("refusal %v", err)
			}
			return
		}
		if again, perr := idcodec.Parse(ev.ID); perr != nil || again != parsed || ev.Reason == "" || !strings.HasPrefix(ev.Actor(), "compensate:") {
			t.Fatalf("accepted %+v", ev)
		}
	})
}

func TestEventFromFieldsNotString(t *testing.T) {
	_, err := saga.EventFromFields(map[string]any{"id": 42, "reason": "r"}, "s")
	if !errors.Is(err, saga.ErrMalformed) {
		t.Fatalf("err = %v", err)
	}
	ev, err := saga.EventFromFields(map[string]any{"id": "x", "reason": "r"}, "s")
	if err != nil || ev.Source != "s" {
		t.Fatalf("%+v %v", ev, err)
	}
}
