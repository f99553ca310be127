package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/registry/redisstore"
)

const registryUsage = `Usage: idgen registry reset-epoch --yes [Redis flags]

Writes a new epoch marker into the Redis registry: the operator's statement
that the registry as it is now is the one to serve, after a loss that made
every instance refuse (idgen_registry_forgetful with reason evicted,
epoch_missing or epoch_changed) was investigated. Records are not touched.
Instances that saw the loss keep refusing until they are restarted.

`

// registryCmd runs `idgen registry <verb>`.
func registryCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "reset-epoch" {
		fmt.Fprint(stderr, registryUsage)
		return errors.New("want the verb reset-epoch")
	}
	var c ServeConfig
	fs := newFlagSet("idgen registry reset-epoch", registryUsage, stderr)
	c.Redis.register(fs)
	yes := fs.Bool("yes", false, "confirm: the registry as it is now is the one to serve")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	switch {
	case c.Redis.Addr == "":
		return errors.New("--redis-addr is required")
	case !*yes:
		return errors.New("--yes is required: a new epoch makes the registry as it is now the one every instance serves")
	}
	cfg, err := c.Redis.config(false, 0, nil, zap.NewNop())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	epoch, err := redisstore.ResetEpoch(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "epoch %s written; restart every idgen serve and idgen compensate instance\n", epoch)
	return nil
}
