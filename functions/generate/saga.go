package generate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/auth"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/sealer"
)

// maxReason bounds the "reason" of a compensation.
const maxReason = 256

// stateAnswer is the body of /commit and /compensate. It is built from the
// stored record only, so every repeat of a transition answers the same.
type stateAnswer struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	CommittedAt   string `json:"committed_at,omitempty"`
	CompensatedAt string `json:"compensated_at,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

func answerOf(rec registry.Record) stateAnswer {
	a := stateAnswer{ID: rec.ID.String(), State: rec.State.String()}
	for _, st := range rec.History {
		switch st.State {
		case registry.Committed:
			a.CommittedAt = msTime(st.AtMS)
		case registry.Compensated:
			a.CompensatedAt, a.Reason = msTime(st.AtMS), st.Reason
		}
	}
	return a
}

func msTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func (s *Service) commit(c *fasthttp.RequestCtx, log *reqLog) error {
	return s.transition(c, log, registry.Committed)
}

func (s *Service) compensate(c *fasthttp.RequestCtx, log *reqLog) error {
	return s.transition(c, log, registry.Compensated)
}

// transition applies a saga step. The outcome (applied, replayed,
// null_compensation) goes in the Idgen-Outcome header, not the body, so the
// body of a repeat is byte-for-byte the first answer.
func (s *Service) transition(c *fasthttp.RequestCtx, log *reqLog, to registry.State) error {
	var b idBody
	if err := decodeBody(c, &b, false); err != nil {
		return err
	}
	id, err := b.parseID()
	if err != nil {
		return err
	}
	if to == registry.Committed && b.Reason != "" {
		return Errorf(CodeInvalidRequest, "reason applies to /compensate only")
	}
	if len(b.Reason) > maxReason {
		return Errorf(CodeInvalidRequest, "reason is longer than %d bytes", maxReason)
	}
	if err := s.auditGate(); err != nil {
		return err
	}
	ctx, cancel := s.requestContext()
	defer cancel()
	rec, out, err := s.d.Registry.Transition(ctx, id, registry.Change{To: to, Reason: b.Reason, Actor: s.subject(c), NowMS: s.cfg.Now().UnixMilli()})
	if err != nil {
		s.d.Metrics.transitions.WithLabelValues(to.String(), "refused").Inc()
		return err
	}
	s.d.Metrics.transitions.WithLabelValues(to.String(), out.String()).Inc()
	if out != registry.Replayed {
		log.L().Info("saga transition", zap.Stringer("id", id), zap.Stringer("state", to), zap.Stringer("outcome", out), zap.String("reason", b.Reason))
		action := audit.ActionCommit
		if to == registry.Compensated {
			action = audit.ActionCompensate
		}
		s.audit(c, log, audit.Event{Actor: s.subject(c), Action: action, Resource: id.String(), Outcome: out.String(), Reason: b.Reason})
	}
	c.Response.Header.Set("Idgen-Outcome", out.String())
	return writeJSON(c, fasthttp.StatusOK, answerOf(rec))
}

type stepView struct {
	State  string `json:"state"`
	At     string `json:"at"`
	Reason string `json:"reason,omitempty"`
	Actor  string `json:"actor,omitempty"`
}

type idView struct {
	ID        string          `json:"id"`
	Timestamp string          `json:"timestamp"`
	Worker    uint16          `json:"worker"`
	Shard     uint8           `json:"shard"`
	Counter   uint64          `json:"counter"`
	State     string          `json:"state"`
	IssuedAt  *string         `json:"issued_at"`
	Deadline  string          `json:"deadline,omitempty"`
	Subject   string          `json:"subject,omitempty"`
	Tombstone bool            `json:"tombstone,omitempty"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	// MetadataErased: the subject's data key was erased (crypto-shredding).
	MetadataErased bool       `json:"metadata_erased,omitempty"`
	History        []stepView `json:"history"`
}

func (s *Service) getID(c *fasthttp.RequestCtx, _ *reqLog) error {
	id, err := idcodec.Parse(string(c.Path()[len("/ids/"):]))
	if err != nil {
		return err
	}
	ctx, cancel := s.requestContext()
	defer cancel()
	rec, err := s.d.Registry.Get(ctx, id)
	if err != nil {
		return err
	}
	f := id.Decompose()
	v := idView{
		ID: id.String(), Timestamp: msTime(int64(f.TimestampMS)), Worker: f.Worker, Shard: f.Shard, Counter: f.Counter,
		State: rec.State.String(), Deadline: msTime(rec.DeadlineMS), Subject: rec.Subject, Tombstone: rec.Tombstone,
		History: make([]stepView, 0, len(rec.History)),
	}
	if rec.IssuedAtMS != 0 {
		t := msTime(rec.IssuedAtMS)
		v.IssuedAt = &t
	}
	// Metadata goes only to the subject that issued the ID, or an admin.
	if p := principal(c); len(rec.Metadata) > 0 && (rec.Subject == p.Subject || p.Has(auth.ScopeAdmin)) {
		plain, err := s.d.Sealer.Open(ctx, rec.Subject, id[:], rec.Metadata)
		switch {
		case errors.Is(err, sealer.ErrErased):
			v.MetadataErased = true
		case err != nil:
			return fmt.Errorf("open metadata of %s: %w", id, err)
		default:
			v.Metadata = plain
		}
	}
	for _, st := range rec.History {
		v.History = append(v.History, stepView{State: st.State.String(), At: msTime(st.AtMS), Reason: st.Reason, Actor: st.Actor})
	}
	return writeJSON(c, fasthttp.StatusOK, v)
}

// maxSubject bounds the subject of an erasure request.
const maxSubject = 256

// eraseSubject deletes a subject's data key: every metadata of theirs
// becomes unreadable (GDPR erasure) while the ID records stay for audit.
func (s *Service) eraseSubject(c *fasthttp.RequestCtx, log *reqLog) error {
	path := string(c.Path())
	subject := strings.TrimSuffix(strings.TrimPrefix(path, "/subjects/"), "/key")
	if subject == "" || len(subject) > maxSubject || strings.Contains(subject, "/") {
		return Errorf(CodeInvalidRequest, "subject must be 1..%d characters without '/'", maxSubject)
	}
	if err := s.auditGate(); err != nil {
		return err
	}
	ctx, cancel := s.requestContext()
	defer cancel()
	if err := s.d.Sealer.Erase(ctx, subject); err != nil {
		return err
	}
	log.L().Info("subject data key erased", zap.String("subject", subject))
	s.audit(c, log, audit.Event{Actor: s.subject(c), Action: audit.ActionEraseSubject, Resource: subject, Outcome: audit.OutcomeSuccess})
	return writeJSON(c, fasthttp.StatusOK, map[string]any{"subject": subject, "erased": true})
}
