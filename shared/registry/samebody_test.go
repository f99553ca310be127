package registry

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
)

// bodyRecord is a record with every field set, history steps included.
func bodyRecord() Record {
	return Record{
		ID: testID, State: Committed, IssuedAtMS: 1_764_000_000_000, Subject: "svc-payments",
		IdemKeyHash: []byte("0123456789abcdef0123456789abcdef"), DeadlineMS: 1_764_000_060_000,
		Metadata: []byte("sealed"), Tombstone: true,
		History: []Step{
			{State: Pending, AtMS: 1_764_000_000_000, Actor: "svc-payments"},
			{State: Committed, AtMS: 1_764_000_000_500, Reason: "settled", Actor: "svc-ledger"},
		},
	}
}

// changeValue sets v, a settable field, to a value other than its own.
func changeValue(t *testing.T, name string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			t.Fatalf("field %s: a slice of %s; give it a case here", name, v.Type().Elem())
		}
		v.SetBytes(append(bytes.Clone(v.Bytes()), 'x'))
	default:
		t.Fatalf("field %s: kind %s; give it a case here", name, v.Kind())
	}
}

// TestSameBody holds SameBody to AppendBinary: records that differ in any
// field AppendBinary encodes (each field of Record and of its history's
// steps, found by reflection, so that a field added later is covered too)
// are not alike, and records alike by SameBody encode to the same bytes.
func TestSameBody(t *testing.T) {
	check := func(t *testing.T, name string, a, b Record) {
		t.Helper()
		same := a.SameBody(&b)
		if same != b.SameBody(&a) {
			t.Errorf("%s: SameBody is not symmetric", name)
		}
		ea, eb := a.AppendBinary(nil), b.AppendBinary(nil)
		if same && !bytes.Equal(ea, eb) {
			t.Errorf("%s: SameBody holds, but the encodings differ", name)
		}
		if !same && bytes.Equal(ea, eb) {
			t.Errorf("%s: the encodings are equal, but SameBody does not hold", name)
		}
	}
	a := bodyRecord()
	check(t, "equal records", a, bodyRecord())
	other := bodyRecord()
	other.ID = idcodec.MustCompose(idcodec.Fields{TimestampMS: 1_764_000_000_001, Worker: 2, Counter: 8})
	if !a.SameBody(&other) {
		t.Error("records that differ only in their IDs are not alike")
	}
	empty, nilled := bodyRecord(), bodyRecord()
	empty.IdemKeyHash, empty.Metadata = []byte{}, []byte{}
	nilled.IdemKeyHash, nilled.Metadata = nil, nil
	check(t, "empty and nil slices", empty, nilled)

	rt := reflect.TypeFor[Record]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		switch f.Name {
		case "ID": // not encoded: the key
		case "History":
		default:
			b := bodyRecord()
			changeValue(t, f.Name, reflect.ValueOf(&b).Elem().Field(i))
			check(t, f.Name, a, b)
		}
	}
	st := reflect.TypeFor[Step]()
	for step := range bodyRecord().History {
		for i := range st.NumField() {
			b := bodyRecord()
			changeValue(t, "History."+st.Field(i).Name, reflect.ValueOf(&b.History[step]).Elem().Field(i))
			check(t, "History."+st.Field(i).Name, a, b)
		}
	}
	for _, hist := range [][]Step{nil, a.History[:1], append(bodyRecord().History, Step{State: Compensated})} {
		b := bodyRecord()
		b.History = hist
		check(t, "history length", a, b)
	}
}
