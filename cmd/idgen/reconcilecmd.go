package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/reconcile"
)

const reconcileUsage = `Usage: idgen reconcile (--url URL | Redis flags) [--shard N] [--from T] [--to T] [--deep]

Accounts for every counter of every range of the shard claimed from --from
to --to (unix milliseconds or RFC 3339; default: all, until now): issued
(pending, committed, compensated and by whom), or never issued and why.
Prints the report as JSON and exits 1 when it lists a violation or an
unaccounted counter. The report reads the registry's state maps (one byte a
counter); --deep also reads every record and checks the maps against them.

With --url it asks a running instance (GET /reconcile, which also tells the
ranges of running instances from abandoned ones; an embedded store is only
readable this way while it runs). With the Redis flags it reads the Redis
registry itself, and counts every unreleased rest as abandoned.

`

// reconcileCmd runs `idgen reconcile`.
func reconcileCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c ServeConfig
	fs := newFlagSet("idgen reconcile", reconcileUsage, stderr)
	c.Redis.register(fs)
	base := fs.String("url", "", "base URL of a running instance (http://host:8080)")
	tokenFile := fs.String("token-file", "", "file holding a bearer token with scope ops:read (--url; or IDGEN_TOKEN)")
	caFile := fs.String("ca-file", "", "PEM CA bundle to verify an https --url (default: the system's)")
	shard := fs.Uint("shard", 0, "shard to reconcile")
	from := fs.String("from", "0", "claims made at or after this time (unix ms or RFC 3339)")
	to := fs.String("to", "", "claims made at or before this time (unix ms or RFC 3339; default now)")
	deep := fs.Bool("deep", false, "also read every record and check the state maps against them")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *shard > 63 {
		return fmt.Errorf("--shard %d: at most 63", *shard)
	}
	fromMS, err := reconcile.ParseTime(*from, 0)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	toMS, err := reconcile.ParseTime(*to, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var rep *reconcile.Report
	switch {
	case (*base == "") == (c.Redis.Addr == ""):
		return errors.New("give either --url or --redis-addr")
	case *base != "":
		rep, err = reconcileOverHTTP(ctx, *base, *tokenFile, *caFile, *shard, fromMS, toMS, *deep)
	default:
		// Reading needs no persistence check (dev): nothing is written.
		rs, oerr := c.Redis.open(ctx, true, uint8(*shard), nil, zap.NewNop())
		if oerr != nil {
			return oerr
		}
		defer rs.Close()
		rep, err = reconcile.Run(ctx, rs, reconcile.Query{Shard: uint8(*shard), FromMS: fromMS, ToMS: toMS, SharedLedger: true, Deep: *deep})
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	t := rep.Totals
	fmt.Fprintf(stderr, "shard %d: %d claims, %d counters: %d issued (%d pending, %d committed, %d compensated), not issued %v; %d violations, %d unaccounted\n",
		rep.Shard, len(rep.Claims), t.Size, t.Issued, t.Pending, t.Committed, t.Compensated, t.NotIssued, len(rep.Violations), -t.Unaccounted)
	if !rep.OK() {
		return fmt.Errorf("%d violations, %d counters unaccounted", len(rep.Violations), -t.Unaccounted)
	}
	return nil
}

// reconcileOverHTTP asks the instance at base for its report.
func reconcileOverHTTP(ctx context.Context, base, tokenFile, caFile string, shard uint, fromMS, toMS int64, deep bool) (*reconcile.Report, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/reconcile")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want http(s)://host[:port]", base)
	}
	u.RawQuery = url.Values{"shard": {strconv.FormatUint(uint64(shard), 10)}, "from": {strconv.FormatInt(fromMS, 10)}, "to": {strconv.FormatInt(toMS, 10)}, "deep": {strconv.FormatBool(deep)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	tok := os.Getenv("IDGEN_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, err
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate", caFile)
		}
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	const limit = 256 << 20
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%s: a report over %d MiB; ask for a shorter window (--from, --to)", u.Redacted(), limit>>20)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(b)))
	}
	var rep reconcile.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", u.Redacted(), err)
	}
	return &rep, nil
}
