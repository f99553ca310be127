package idledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry/redisstore"
)

// BucketOf is where the Redis registry (redisstore, default prefix) holds
// id, read from the outside (shared/registry/redisstore/keys.go): a record
// lives in the hash "idgen:r:{<shard>:<counter>>7>}" under the field
// "<counter&127>", or in a run of the hash's field redisstore.RunsField;
// its value starts with the ID's first 8 bytes (timestamp, version,
// worker), then a 4-byte writer nonce.
func BucketOf(id idcodec.ID) (key, field string) {
	f := id.Decompose()
	return redisstore.DefaultPrefix + "r:{" + strconv.Itoa(int(f.Shard)) + ":" + strconv.FormatUint(f.Counter>>7, 10) + "}",
		strconv.FormatUint(f.Counter&127, 10)
}

// Unregistered reads the record of every ID of ids from the registry in c
// (pipelined, in chunks: the bucket's field and its runs,
// redisstore.FieldValue) and describes each ID whose record is missing or
// holds a value written for another ID. An error means the registry could
// not be read.
func Unregistered(ctx context.Context, c redis.Cmdable, ids []idcodec.ID) ([]string, error) {
	var bad []string
	const chunk = 4096
	for lo := 0; lo < len(ids); lo += chunk {
		part := ids[lo:min(lo+chunk, len(ids))]
		pipe := c.Pipeline()
		cmds := make([]*redis.SliceCmd, len(part))
		for i, id := range part {
			k, f := BucketOf(id)
			cmds[i] = pipe.HMGet(ctx, k, f, redisstore.RunsField)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, cmd := range cmds {
			vals, err := cmd.Result()
			if err != nil {
				return nil, err
			}
			var field, runs []byte
			if s, ok := vals[0].(string); ok {
				field = []byte(s)
			}
			if s, ok := vals[1].(string); ok {
				runs = []byte(s)
			}
			v, err := redisstore.FieldValue(int(part[i].Decompose().Counter&127), field, runs)
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("%s: %v", part[i], err))
			case v == nil:
				bad = append(bad, part[i].String()+": no record in its bucket")
			case len(v) < 13:
				bad = append(bad, fmt.Sprintf("%s: %d-byte value", part[i], len(v)))
			case !bytes.Equal(v[:8], part[i][:8]):
				bad = append(bad, fmt.Sprintf("%s: field holds another ID's high half %x", part[i], v[:8]))
			}
		}
	}
	return bad, nil
}
