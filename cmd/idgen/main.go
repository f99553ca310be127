// Command idgen is the transaction ID service: `idgen serve` runs the HTTP
// API, `idgen decode` prints the fields of an ID, `idgen healthcheck` probes a
// running instance (for container HEALTHCHECKs without curl).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `idgen: distributed transaction ID service

Usage:
  idgen serve [flags]        run the HTTP service (idgen serve --help for flags)
  idgen compensate [flags]   consume failure events (Redis Stream) and void their IDs
  idgen decode <id>          print the fields of an ID as JSON
  idgen healthcheck [flags]  exit 0 when the instance at --url is live
  idgen token [flags]        mint a bearer token from a local key file (idgen token --help)
  idgen keygen [--dir D]     create missing development credentials (Redis, ZooKeeper, JWT, metadata key, audit signing key)
  idgen audit verify [--public-key F] FILE...
                             check the hash chains and signed checkpoints of audit logs (rotated files oldest first)
  idgen reconcile (--url URL | Redis flags) [--shard N] [--from T] [--to T]
                             account for every counter of the claimed ranges; exit 1 on a violation
  idgen registry reset-epoch --yes [flags]
                             accept the Redis registry as it is after a loss (see docs/operations.md)
  idgen version              the build's version and commit (also --version)
  idgen --help               this text

Every flag of serve has an environment variable: --redis-addr <=> IDGEN_REDIS_ADDR.
Flags win over the environment.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if inLambda() {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT)
		defer stop()
		if err := runLambda(ctx, stderr); err != nil {
			fmt.Fprintf(stderr, "idgen lambda: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version" || args[0] == "-version") {
		printVersion(stdout)
		return 0
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		m := NewServe(stderr)
		if err = m.ParseFlags(args[1:]); err == nil {
			err = m.Run(ctx)
		}
	case "decode":
		err = decode(args[1:], stdout)
	case "healthcheck":
		err = healthcheck(ctx, args[1:])
	case "token":
		err = token(args[1:], stdout, stderr)
	case "compensate":
		err = compensateCmd(ctx, args[1:], stdout, stderr)
	case "keygen":
		err = keygen(args[1:], stdout, stderr)
	case "registry":
		err = registryCmd(ctx, args[1:], stdout, stderr)
	case "audit":
		err = auditCmd(args[1:], stdout, stderr)
	case "reconcile":
		err = reconcileCmd(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "idgen: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(stderr, "idgen %s: %v\n", args[0], err)
		return 1
	}
}
