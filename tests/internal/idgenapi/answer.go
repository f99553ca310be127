package idgenapi

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/idgen/idgen/shared/idcodec"
)

// ParseGenerated reads the body of a 200 answer to POST /generate for
// count IDs (0: a single ID, {"id"}) and checks it against the contract:
// canonical version-8 IDs, as many as asked, in increasing order. bad says
// what breaks the contract ("" when nothing does); ids holds every ID that
// parses even then.
func ParseGenerated(body []byte, count int) (ids []idcodec.ID, bad string) {
	var v struct {
		ID  *string  `json:"id"`
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Sprintf("200 body is not JSON: %v: %.100s", err, body)
	}
	texts, want := v.IDs, count
	if count == 0 {
		want = 1
		if v.ID == nil {
			return nil, fmt.Sprintf("single 200 without \"id\": %.100s", body)
		}
		texts = []string{*v.ID}
	}
	if len(texts) != want {
		bad = fmt.Sprintf("asked %d IDs, got %d", want, len(texts))
	}
	ids = make([]idcodec.ID, 0, len(texts))
	for i, s := range texts {
		id, err := idcodec.Parse(s)
		if err != nil || !id.Valid() || id.String() != s {
			bad = fmt.Sprintf("ID %q is not a canonical idgen ID: %v", s, err)
			continue
		}
		if len(ids) > 0 && bytes.Compare(ids[len(ids)-1][:], id[:]) >= 0 {
			bad = fmt.Sprintf("batch not in increasing order at %d", i)
		}
		ids = append(ids, id)
	}
	return ids, bad
}

// ErrorCode returns the code of a JSON error body ({"error":{"code"}}), or
// "" when body is not one.
func ErrorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}
