// Command generate shows the Go client of idgen (package client) at work:
// it issues -count transaction IDs from the service at -endpoints, prints
// them one a line, commits the first and prints the record the registry
// then holds of it.
//
//	go run ./examples/generate -endpoints http://127.0.0.1:8080 -count 3
//
// The bearer token is -token, else the environment variable IDGEN_TOKEN;
// none is sent when both are empty (a server in --dev takes requests
// without one). Several comma-separated endpoints are tried in order: the
// client fails over to the next one when one does not answer.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/idgen/idgen/client"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
}

// run is the command with its arguments, environment and output passed in,
// so that its test runs it in process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", "http://127.0.0.1:8080", "comma-separated base URLs of the service, in order of preference")
	token := fs.String("token", "", "bearer token (default: $IDGEN_TOKEN; none in --dev)")
	count := fs.Int("count", 3, "how many IDs to issue, 1..1000")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *count < 1 || *count > 1000 {
		return fmt.Errorf("-count %d: want 1..1000", *count)
	}
	cfg := client.Config{Endpoints: strings.Split(*endpoints, ",")}
	if tok := cmp.Or(*token, getenv("IDGEN_TOKEN")); tok != "" {
		cfg.Token = client.StaticToken(tok)
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	var ids []string
	if *count == 1 {
		g, err := c.Generate(ctx, client.GenerateRequest{})
		if err != nil {
			return err
		}
		ids = []string{g.ID}
	} else {
		b, err := c.GenerateN(ctx, *count, client.GenerateRequest{})
		if err != nil {
			return err
		}
		ids = b.IDs
	}
	for _, id := range ids {
		fmt.Fprintln(stdout, id)
	}

	tr, err := c.Commit(ctx, ids[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\ncommitted %s (%s)\n", tr.ID, tr.Outcome)
	r, err := c.Get(ctx, ids[0])
	if err != nil {
		return err
	}
	printRecord(stdout, r)
	return nil
}

func printRecord(w io.Writer, r *client.Record) {
	fmt.Fprintf(w, "\nrecord of %s\n", r.ID)
	fmt.Fprintf(w, "  state      %s\n", r.State)
	fmt.Fprintf(w, "  issued at  %s by %q\n", r.IssuedAt.Format(time.RFC3339Nano), r.Subject)
	fmt.Fprintf(w, "  encoded    timestamp %s, worker %d, shard %d, counter %d\n",
		r.Timestamp.Format(time.RFC3339Nano), r.Worker, r.Shard, r.Counter)
	fmt.Fprintln(w, "  history")
	for _, s := range r.History {
		fmt.Fprintf(w, "    %-11s %s", s.State, s.At.Format(time.RFC3339Nano))
		if s.Actor != "" {
			fmt.Fprintf(w, " by %q", s.Actor)
		}
		if s.Reason != "" {
			fmt.Fprintf(w, " (%s)", s.Reason)
		}
		fmt.Fprintln(w)
	}
}
