// Command idgen-bench is `make bench`: it measures idgen beside baselines in
// the same run on the same machine and prints ratios, never bare figures.
//
//	idgen-bench [-rounds 3] [-duration 5s] [-idgen bin/idgen]
//
// In-process: the generator hot path against github.com/google/uuid NewV7 and
// github.com/bwmarrin/snowflake (ns/ID, allocs). Over HTTP with wrk (Debian
// package): a bare fasthttp handler answering a constant ID (the ceiling)
// against `idgen serve` in embedded mode, single IDs and count=1000 batches.
// Runs alternate, after a warm-up, and each figure is the median of the
// rounds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "ceiling" {
		// The ceiling server: the least an HTTP ID service can do.
		body := []byte(`{"id":"019ab697-e800-8007-8200-0000000003e9"}`)
		err := fasthttp.ListenAndServe(os.Args[2], func(c *fasthttp.RequestCtx) {
			c.SetContentType("application/json")
			c.SetBody(body)
		})
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rounds := flag.Int("rounds", 3, "rounds per measurement (median reported)")
	dur := flag.Duration("duration", 5*time.Second, "wrk duration per run")
	conns := flag.Int("connections", 64, "wrk connections")
	idgen := flag.String("idgen", "bin/idgen", "idgen binary")
	skipHTTP := flag.Bool("skip-http", false, "only the in-process benchmarks")
	skipIn := flag.Bool("skip-inprocess", false, "only the HTTP benchmarks")
	flag.Parse()

	fmt.Printf("idgen bench: %d rounds, median reported; GOMAXPROCS=%d\n\n", *rounds, runtimeProcs())
	if !*skipIn {
		inProcess(*rounds)
	}
	if *skipHTTP {
		return
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		fmt.Fprintln(os.Stderr, "idgen-bench: wrk not found; run scripts/install-deps.sh (make deps)")
		os.Exit(1)
	}
	if err := httpBench(context.Background(), *idgen, *rounds, *dur, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "idgen-bench:", err)
		os.Exit(1)
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
