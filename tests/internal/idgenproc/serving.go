package idgenproc

import (
	"bytes"
	"encoding/json"
)

// ServingAddr returns the address of the first "serving" line in the JSON
// log of an idgen child ("" when there is none yet): the address it
// listens on, the only way to learn a port the child picked itself
// (--listen 127.0.0.1:0).
func ServingAddr(log []byte) string {
	for len(log) > 0 {
		i := bytes.IndexByte(log, '\n')
		if i < 0 {
			return "" // a line still being written
		}
		line := log[:i]
		log = log[i+1:]
		if !bytes.Contains(line, []byte(`"msg":"serving"`)) {
			continue
		}
		var v struct {
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &v) == nil && v.Addr != "" {
			return v.Addr
		}
	}
	return ""
}
