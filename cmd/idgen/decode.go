package main

import (
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
)

func decode(args []string, w io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: idgen decode <id>")
	}
	id, err := idcodec.Parse(args[0])
	if err != nil {
		return err
	}
	f := id.Decompose()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"id":        id.String(),
		"timestamp": time.UnixMilli(int64(f.TimestampMS)).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"unix_ms":   f.TimestampMS,
		"worker":    f.Worker,
		"shard":     f.Shard,
		"counter":   f.Counter,
		"version":   idcodec.Version,
		"variant":   "RFC 9562",
	})
}
