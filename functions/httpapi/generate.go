package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// maxCollisionRetries bounds how often a colliding batch is replaced by
// fresh IDs before the request fails.
const maxCollisionRetries = 8

type generateBody struct {
	Count     *int            `json:"count"`
	TimeoutMS *int64          `json:"timeout_ms"`
	Metadata  json.RawMessage `json:"metadata"`
}

// generateReq is a validated /generate request.
type generateReq struct {
	n        int
	batch    bool
	timeout  time.Duration
	metadata []byte
}

func (s *Service) parseGenerate(c *fasthttp.RequestCtx) (generateReq, error) {
	if len(bytes.TrimSpace(c.PostBody())) == 0 {
		return generateReq{n: 1}, nil // what decodeBody and the checks below make of it
	}
	var b generateBody
	if err := decodeBody(c, &b, true); err != nil {
		return generateReq{}, err
	}
	r := generateReq{n: 1}
	if b.Count != nil {
		if *b.Count < 1 || *b.Count > 1000 {
			return r, Errorf(api.CodeInvalidRequest, "count must be between 1 and 1000")
		}
		r.n, r.batch = *b.Count, true
	}
	if b.TimeoutMS != nil {
		if *b.TimeoutMS < 1 || *b.TimeoutMS > s.cfg.MaxTimeout.Milliseconds() { // compare in ms: no Duration overflow
			return r, Errorf(api.CodeInvalidRequest, "timeout_ms must be between 1 and %d", s.cfg.MaxTimeout.Milliseconds())
		}
		r.timeout = time.Duration(*b.TimeoutMS) * time.Millisecond
	}
	if len(b.Metadata) > 0 && !bytes.Equal(b.Metadata, []byte("null")) {
		if b.Metadata[0] != '{' {
			return r, Errorf(api.CodeInvalidRequest, "metadata must be a JSON object")
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, b.Metadata); err != nil {
			return r, Errorf(api.CodeInvalidRequest, "metadata is not valid JSON")
		}
		if compact.Len() > s.cfg.MaxMetadata {
			return r, Errorf(api.CodeInvalidRequest, "metadata is %d bytes, more than %d", compact.Len(), s.cfg.MaxMetadata)
		}
		r.metadata = compact.Bytes()
	}
	return r, nil
}

// hash identifies the request's meaning for Idempotency-Key comparisons:
// the same fields give the same hash whatever the JSON spacing or order.
func (r generateReq) hash() [32]byte {
	h := sha256.New()
	var b [17]byte
	binary.BigEndian.PutUint64(b[0:], uint64(r.n))
	binary.BigEndian.PutUint64(b[8:], uint64(r.timeout))
	if r.batch {
		b[16] = 1
	}
	h.Write(b[:])
	h.Write(r.metadata)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (s *Service) generate(c *fasthttp.RequestCtx, log *reqLog) error {
	req, err := s.parseGenerate(c)
	if err != nil {
		return err
	}
	var idem *registry.IdemEntry
	if key := c.Request.Header.Peek("Idempotency-Key"); len(key) > 0 {
		if !validRequestIDBytes(key) {
			return Errorf(api.CodeInvalidRequest, "Idempotency-Key must be 1..128 printable ASCII characters")
		}
		idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash(s.subject(c), string(key)), BodyHash: req.hash(), Batch: req.batch}
	}
	if err := s.auditGate(); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(log)
	defer cancel()

	// A batch's IDs go into a pooled array unless an idempotency entry
	// keeps them: nothing else holds the array after writeIDs.
	var pooled *[]idcodec.ID
	if req.n > 1 && idem == nil {
		pooled = getIDs(req.n)
		defer idsPool.Put(pooled)
	}
	ids, replay, err := s.issue(ctx, c, log, req, idem, pooled)
	if err != nil {
		return err
	}
	if replay != nil {
		if replay.BodyHash != idem.BodyHash {
			return Errorf(api.CodeIdempotencyKeyReused, "this Idempotency-Key was used with a different request body")
		}
		c.Response.Header.Set("Idempotent-Replayed", "true")
		ids = replay.IDs
	} else {
		s.d.Metrics.issued.Add(float64(len(ids)))
	}
	log.setIDs(ids...)
	writeIDs(c, ids, req.batch)
	return nil
}

// issue generates and registers the IDs of req. A collision in the registry
// burns the batch and issues a fresh one; the client never sees it.
//
// The issue time (and the deadline counted from it) is read after the IDs
// are taken: a range claim can hold NextN for a while, and an ID's
// issued_at is then still not before the time in the ID (both read the
// wall clock).
func (s *Service) issue(ctx context.Context, c *fasthttp.RequestCtx, log *reqLog, req generateReq, idem *registry.IdemEntry, pooled *[]idcodec.ID) ([]idcodec.ID, *registry.IdemEntry, error) {
	subject := s.subject(c)
	var keyHash []byte
	if idem != nil {
		keyHash = idem.KeyHash[:]
	}
	for attempt := 0; ; attempt++ {
		var ids []idcodec.ID
		var recs []registry.Record
		var hist []registry.Step
		var bufs *batchBufs
		if req.n == 1 {
			// The request's own storage, unless an earlier attempt lent
			// it to the registry: then one allocation instead of three.
			one := &log.one
			if log.lent {
				one = new(issueOne)
			}
			ids, recs, hist = one.id[:0], one.rec[:], one.step[:]
		} else {
			bufs = getBatchBufs(req.n)
			recs, hist = bufs.recs, bufs.steps
			if pooled != nil {
				ids = (*pooled)[:0]
			} else {
				ids = make([]idcodec.ID, 0, req.n)
			}
		}
		ids, err := s.d.IDs.NextN(ctx, req.n, ids)
		if err != nil {
			return nil, nil, err
		}
		now := s.cfg.Now()
		var deadline int64
		if req.timeout > 0 {
			deadline = now.Add(req.timeout).UnixMilli()
		}
		for i, id := range ids {
			var sealed []byte
			if len(req.metadata) > 0 {
				if sealed, err = s.d.Sealer.Seal(ctx, subject, ids[i][:], req.metadata); err != nil {
					return nil, nil, err
				}
			}
			recs[i] = registry.Record{
				ID: id, State: registry.Pending, IssuedAtMS: now.UnixMilli(), Subject: subject,
				IdemKeyHash: keyHash, DeadlineMS: deadline, Metadata: sealed,
			}
			hist[i] = registry.Step{State: registry.Pending, AtMS: now.UnixMilli(), Actor: subject}
			recs[i].History = hist[i : i+1 : i+1]
		}
		if idem != nil {
			idem.IDs, idem.CreatedMS = ids, now.UnixMilli()
		}
		// A Register that answers nil is done with recs; any other answer
		// may leave them in a commit still to come (see reqLog.lent).
		own := req.n == 1 && &recs[0] == &log.one.rec[0]
		if own {
			log.lent = true
		}
		rctx, span := ctx, noSpan
		if s.d.Tracer != nil {
			rctx, span = s.d.Tracer.Start(ctx, "registry.register", trace.WithAttributes(attribute.Int("idgen.ids", len(ids))))
		}
		replay, err := s.d.Registry.Register(rctx, registry.Issue{Records: recs, Idem: idem}, s.cfg.IdempotencyTTL.Milliseconds(), now.UnixMilli())
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		if own && err == nil {
			log.lent = false
		}
		if bufs != nil && err == nil {
			putBatchBufs(bufs)
		}
		if errors.Is(err, registry.ErrCollision) && attempt < maxCollisionRetries && ctx.Err() == nil {
			s.d.Metrics.collisions.Inc()
			log.L().Error("registry collision: IDs burnt, issuing fresh ones", zap.Error(err), zap.Int("count", len(ids)))
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		return ids, replay, nil
	}
}

// batchBufs are the records of a batch and their history steps (one each,
// in one array). They go back to batchPool only after a Register that
// answered nil, which is done with them; after any other answer a commit
// still to come may read them, and they are left to the collector.
type batchBufs struct {
	recs  []registry.Record
	steps []registry.Step
}

var batchPool = sync.Pool{New: func() any { return new(batchBufs) }}

// getBatchBufs returns buffers of n records, cleared.
func getBatchBufs(n int) *batchBufs {
	b := batchPool.Get().(*batchBufs)
	if cap(b.recs) < n {
		b.recs, b.steps = make([]registry.Record, n), make([]registry.Step, n)
	}
	b.recs, b.steps = b.recs[:n], b.steps[:n]
	return b
}

// putBatchBufs gives b back, its records cleared so that the pool holds
// no subject, metadata or key hash of a finished request.
func putBatchBufs(b *batchBufs) {
	clear(b.recs)
	clear(b.steps)
	batchPool.Put(b)
}

// idsPool holds the ID arrays of batches (see generate).
var idsPool = sync.Pool{New: func() any { return new([]idcodec.ID) }}

// getIDs returns a pooled array with room for n IDs.
func getIDs(n int) *[]idcodec.ID {
	p := idsPool.Get().(*[]idcodec.ID)
	if cap(*p) < n {
		*p = make([]idcodec.ID, 0, n)
	}
	return p
}

// writeIDs writes {"id": ...} or {"ids": [...]} without reflection.
func writeIDs(c *fasthttp.RequestCtx, ids []idcodec.ID, batch bool) {
	if batch {
		writeBatch(c, ids)
		return
	}
	var small [64]byte // a single ID's answer fits: no allocation (SetBody copies)
	buf := append(small[:0], `{"id":"`...)
	buf = ids[0].AppendText(buf)
	buf = append(buf, `"}`...)
	c.Response.Header.SetContentType("application/json")
	c.SetBody(buf)
}

// writeBatch writes {"ids": [...]} into the response's own body buffer,
// which fasthttp keeps from one request of a connection to the next.
func writeBatch(c *fasthttp.RequestCtx, ids []idcodec.ID) {
	buf := slices.Grow(c.Response.SwapBody(nil)[:0], 16+len(ids)*(idcodec.TextLen+3))
	buf = append(buf, `{"ids":[`...)
	for i, id := range ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = id.AppendText(buf)
		buf = append(buf, '"')
	}
	buf = append(buf, "]}"...)
	c.Response.Header.SetContentType("application/json")
	c.Response.SwapBody(buf)
}
