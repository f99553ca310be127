package registry

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
)

var testID = idcodec.MustCompose(idcodec.Fields{TimestampMS: 1_764_000_000_000, Worker: 1, Counter: 7})

func TestApply(t *testing.T) {
	commit := Change{To: Committed, Actor: "alice", NowMS: 10}
	comp := Change{To: Compensated, Reason: "payment failed", Actor: "bob", NowMS: 20}
	tests := []struct {
		name    string
		state   State
		exists  bool
		ch      Change
		want    Outcome
		wantErr error
		after   State
	}{
		{"commit pending", Pending, true, commit, Applied, nil, Committed},
		{"commit committed", Committed, true, commit, Replayed, nil, Committed},
		{"commit compensated (hanging)", Compensated, true, commit, 0, ErrConflict, Compensated},
		{"commit unknown", 0, false, commit, 0, ErrNotFound, 0},
		{"compensate pending", Pending, true, comp, Applied, nil, Compensated},
		{"compensate committed", Committed, true, comp, Applied, nil, Compensated},
		{"compensate compensated (duplicate)", Compensated, true, comp, Replayed, nil, Compensated},
		{"compensate unknown (null compensation)", 0, false, comp, Tombstoned, nil, Compensated},
		{"sweeper on committed", Committed, true, Change{To: Compensated, From: Pending, NowMS: 5}, 0, ErrConflict, Committed},
		{"sweeper on pending", Pending, true, Change{To: Compensated, From: Pending, Reason: "timeout", NowMS: 5}, Applied, nil, Compensated},
		{"to pending is no transition", Pending, true, Change{To: Pending}, 0, errAny, Pending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := Record{ID: testID, State: tt.state, History: []Step{{State: tt.state}}}
			before := rec
			before.History = append([]Step(nil), rec.History...)
			out, err := Apply(&rec, tt.exists, tt.ch)
			switch {
			case tt.wantErr == errAny && err == nil:
				t.Fatal("want an error")
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && err != nil:
				t.Fatalf("err = %v", err)
			}
			if out != tt.want {
				t.Fatalf("outcome = %v, want %v", out, tt.want)
			}
			if out == Replayed || err != nil {
				if !reflect.DeepEqual(rec, before) {
					t.Fatalf("record changed without effect: %+v", rec)
				}
				return
			}
			if rec.State != tt.after || rec.Last().State != tt.after || rec.Last().AtMS != tt.ch.NowMS || rec.Last().Reason != tt.ch.Reason {
				t.Fatalf("after = %+v", rec)
			}
			if out == Tombstoned && (!rec.Tombstone || len(rec.History) != 1) {
				t.Fatalf("tombstone = %+v", rec)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestRecordEncodingRoundTrip(t *testing.T) {
	recs := []Record{
		{ID: testID, State: Pending, IssuedAtMS: 1_764_000_000_000, History: []Step{{State: Pending, AtMS: 1_764_000_000_000}}},
		{ID: testID, State: Compensated, Tombstone: true, History: []Step{{State: Compensated, AtMS: 9, Reason: "r", Actor: "a"}}},
		{
			ID: testID, State: Committed, IssuedAtMS: 1, Subject: "svc-payments", IdemKeyHash: bytes.Repeat([]byte{7}, 32),
			DeadlineMS: 99, Metadata: []byte(`{"order":"A-1"}`),
			History: []Step{{State: Pending, AtMS: 1, Actor: "svc"}, {State: Committed, AtMS: 2, Actor: "svc"}},
		},
	}
	for _, r := range recs {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRecord(testID, b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
	// A plain pending record is compact.
	b, _ := recs[0].MarshalBinary()
	if len(b) > 24 {
		t.Fatalf("pending record takes %d bytes", len(b))
	}
}

func TestIdemEntryRoundTrip(t *testing.T) {
	e := IdemEntry{KeyHash: IdemKeyHash("alice", "k1"), BodyHash: [32]byte{1, 2}, IDs: []idcodec.ID{testID, testID}, Batch: true, CreatedMS: 123}
	b, _ := e.MarshalBinary()
	got, err := DecodeIdemEntry(e.KeyHash, b)
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if IdemKeyHash("alice", "k1") == IdemKeyHash("bob", "k1") || IdemKeyHash("a", "bk") == IdemKeyHash("ab", "k") {
		t.Fatal("keys of different subjects meet")
	}
	if _, err := DecodeIdemEntry(e.KeyHash, b[:40]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v", err)
	}
}

// FuzzDecodeRecord: stored bytes that do not decode give ErrCorrupt, never a
// panic; whatever decodes re-encodes to a record that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	r := Record{ID: testID, State: Committed, Subject: "s", History: []Step{{State: Pending}, {State: Committed, Reason: "x"}}}
	b, _ := r.MarshalBinary()
	f.Add(b)
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{1, 9, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 15})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := DecodeRecord(testID, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again, err := DecodeRecord(testID, rec.AppendBinary(nil))
		if err != nil || !reflect.DeepEqual(again, rec) {
			t.Fatalf("re-encode: %+v vs %+v (%v)", again, rec, err)
		}
	})
}
