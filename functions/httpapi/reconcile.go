package httpapi

import (
	"context"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/reconcile"
)

// reconcileTimeout bounds one GET /reconcile: it reads the state maps of
// the window's claims (every record too when deep), far more than a
// request of the hot path.
const reconcileTimeout = time.Minute

// reconcileReport answers GET /reconcile?shard=&from=&to=&deep=: the account of
// every counter of the shard's claims made in the window (reconcile.Run),
// with the instances listed by Membership counted as running. from and to
// are RFC 3339 times or unix milliseconds; from defaults to 0 and to to
// now. shard, when given, must be the one this instance serves; deep=true
// also checks the state maps against every record (reconcile.Query.Deep).
func (s *Service) reconcileReport(c *fasthttp.RequestCtx, _ *reqLog) error {
	if s.d.Ledger == nil {
		return Errorf(api.CodeUnavailable, "this instance's registry keeps no claim ledger")
	}
	// One report at a time: each reads every state map of its window.
	if !s.reconciling.TryLock() {
		return Errorf(api.CodeUnavailable, "a reconciliation is running on this instance; retry when it is done")
	}
	defer s.reconciling.Unlock()
	args := c.QueryArgs()
	if v := args.Peek("shard"); len(v) > 0 {
		n, err := strconv.ParseUint(string(v), 10, 8)
		if err != nil || uint8(n) != s.d.Shard {
			return Errorf(api.CodeInvalidRequest, "shard must be %d, the shard this instance serves", s.d.Shard)
		}
	}
	deep := false
	if v := args.Peek("deep"); len(v) > 0 {
		b, err := strconv.ParseBool(string(v))
		if err != nil {
			return Errorf(api.CodeInvalidRequest, "deep must be true or false")
		}
		deep = b
	}
	now := time.Now().UnixMilli()
	from, err := reconcile.ParseTime(string(args.Peek("from")), 0)
	if err != nil {
		return Errorf(api.CodeInvalidRequest, "from: %v", err)
	}
	to, err := reconcile.ParseTime(string(args.Peek("to")), now)
	if err != nil {
		return Errorf(api.CodeInvalidRequest, "to: %v", err)
	}
	if from > to {
		return Errorf(api.CodeInvalidRequest, "from is after to")
	}
	ctx, cancel := context.WithTimeout(context.Background(), reconcileTimeout)
	defer cancel()
	live := map[string]bool{}
	if s.d.Membership != nil {
		ms, err := s.d.Membership.Members(ctx)
		if err != nil {
			return Errorf(api.CodeUnavailable, "cannot list instances: %v", err)
		}
		for _, m := range ms {
			live[m.Instance] = m.Instance != ""
		}
	}
	rep, err := reconcile.Run(ctx, s.d.Ledger, reconcile.Query{Shard: s.d.Shard, FromMS: from, ToMS: to, NowMS: now, SharedLedger: s.d.SharedLedger, Deep: deep, Live: func(i string) bool { return live[i] }})
	if err != nil {
		return err
	}
	return writeJSON(c, fasthttp.StatusOK, rep)
}
