package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// Verification: a Verifier reads audit files in the order they were
// written (rotated files oldest first), follows each writer's chain and
// stops at the first broken link. A link is broken when a line of a
// writer is not the successor of the writer's previous line: its seq is
// not the next one, or its prev is not the SHA-256 of that line. The line
// after the break tells what broke:
//
//   - a line whose successor's prev does not match, while the seq goes
//     on: that line is modified;
//   - a gap in seq: lines are deleted, or, when the next line of the
//     writer fills the gap, reordered;
//   - a seq seen twice, or a line without chain fields: a line is
//     inserted (of two lines with one seq, the inserted one is the line
//     the rest of the chain does not go on from).
//
// Each checkpoint line must agree with the chain (its writer, seq and
// hash are those of the line before it) and, given the public key, carry
// a valid signature. Checkpoints kept in a second place, given with
// AddCheckpoints, must each match a line of the files: one the files end
// before shows that lines were cut off the end.
//
// What the file alone cannot show: lines after a writer's last
// checkpoint can be cut off, or rewritten with a chain of their own, by
// whoever can write the file; Report says how many there are.

// ErrBroken is matched (errors.Is) by a *Break.
var ErrBroken = errors.New("audit: chain broken")

// Position is a line of a file, counted from 1.
type Position struct {
	File string
	Line int
}

func (p Position) String() string { return p.File + ":" + strconv.Itoa(p.Line) }

// Break is the first broken link a Verifier found.
type Break struct {
	Position
	Writer string // "" when the line names none
	Reason string
}

func (b *Break) Error() string     { return b.Position.String() + ": " + b.Reason }
func (b *Break) Is(err error) bool { return err == ErrBroken }
func breakAt(p Position, w, format string, args ...any) *Break {
	return &Break{Position: p, Writer: w, Reason: fmt.Sprintf(format, args...)}
}

// WriterReport is what a Verifier found of one writer's chain.
type WriterReport struct {
	Writer      string
	Instance    string   // of the chain's first line
	Start       Position // the chain's first line (seq 1)
	End         Position // its last line
	Lines       uint64   // lines verified: seq of the last
	Checkpoints int      // checkpoint lines that agree with the chain (and verify, with a key)
	Signed      uint64   // lines covered by the last checkpoint, itself included
}

// Unsigned is the number of lines after the writer's last checkpoint.
func (w WriterReport) Unsigned() uint64 { return w.Lines - w.Signed }

// Report is the result of a verification.
type Report struct {
	Writers    []*WriterReport // in the order of their first line
	Signatures bool            // checkpoint signatures were checked
	External   int             // checkpoints from a second place, each matched
	Broken     *Break          // the first broken link; nil when none
}

// VerifyOptions configure a Verifier. The zero value checks chains only.
type VerifyOptions struct {
	// PublicKey checks checkpoint signatures. Nil: checkpoints are checked
	// against the chain only, and an attacker who rewrites a whole chain
	// goes unseen.
	PublicKey ed25519.PublicKey
}

// Verifier checks audit files read in order. Not safe for concurrent use.
type Verifier struct {
	opts     VerifyOptions
	writers  map[string]*writerState
	rep      Report
	suspect  *suspect
	external map[string][]*externalCP // by writer
	extOrder []*externalCP
}

type writerState struct {
	rep  *WriterReport
	last link
}

// link is an accepted line of a chain, or one under suspicion.
type link struct {
	seq  uint64
	hash [32]byte
	prev string
	at   Position
}

// suspect is a broken link: last is the writer's last accepted line, next
// the line that does not follow it. The writer's line after next tells
// which of them broke.
type suspect struct {
	w    *writerState
	next link
}

type externalCP struct {
	Checkpoint
	at      Position
	matched bool
}

// NewVerifier returns a Verifier with opts.
func NewVerifier(opts VerifyOptions) *Verifier {
	return &Verifier{opts: opts, writers: map[string]*writerState{}, external: map[string][]*externalCP{},
		rep: Report{Signatures: opts.PublicKey != nil}}
}

// Verify reads the files at paths in order (oldest first) and, first, the
// checkpoints kept in a second place in the files at checkpoints. Errors:
// a file cannot be read. A broken chain is not an error: see
// Report.Broken.
func Verify(opts VerifyOptions, checkpoints []string, paths ...string) (*Report, error) {
	v := NewVerifier(opts)
	for _, p := range checkpoints {
		if err := v.addFile(p, v.AddCheckpoints); err != nil {
			return nil, err
		}
	}
	for _, p := range paths {
		if err := v.addFile(p, v.Add); err != nil {
			return nil, err
		}
	}
	return v.Finish(), nil
}

func (v *Verifier) addFile(path string, add func(string, io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	return add(path, f)
}

// AddCheckpoints reads checkpoints kept in a second place, one JSON object
// a line: a Checkpoint, or an audit line (the audit.checkpoint lines
// count, the others are skipped: a shipped copy of the log is such a
// place). Add them before the files they cover. Errors: r fails. A line
// that is not JSON, or a checkpoint whose signature does not verify, is
// the Report's break.
func (v *Verifier) AddCheckpoints(name string, r io.Reader) error {
	return eachLine(name, r, func(at Position, line []byte) bool {
		if v.rep.Broken != nil {
			return false
		}
		var wrapped struct {
			Action     string      `json:"action"`
			Checkpoint *Checkpoint `json:"checkpoint"`
		}
		var cp Checkpoint
		switch {
		case json.Unmarshal(line, &wrapped) != nil:
			v.rep.Broken = breakAt(at, "", "not a JSON object")
			return false
		case wrapped.Checkpoint != nil:
			cp = *wrapped.Checkpoint
		case wrapped.Action != "":
			return true // an audit line, not a checkpoint
		default:
			if err := json.Unmarshal(line, &cp); err != nil || cp.Writer == "" || cp.Hash == "" {
				v.rep.Broken = breakAt(at, "", "not a checkpoint")
				return false
			}
		}
		if v.opts.PublicKey != nil {
			if err := cp.Verify(v.opts.PublicKey); err != nil {
				v.rep.Broken = breakAt(at, cp.Writer, "checkpoint of writer %s seq %d: %v", cp.Writer, cp.Seq, err)
				return false
			}
		}
		e := &externalCP{Checkpoint: cp, at: at}
		v.external[cp.Writer] = append(v.external[cp.Writer], e)
		v.extOrder = append(v.extOrder, e)
		return true
	})
}

// Add reads the audit file r (named name in the report) after those added
// before. Errors: r fails. It stops reading at a broken link.
func (v *Verifier) Add(name string, r io.Reader) error {
	return eachLine(name, r, v.line)
}

// eachLine calls f with each line of r (without its newline) until f
// returns false.
func eachLine(name string, r io.Reader, f func(Position, []byte) bool) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var long []byte
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			line, err = br.ReadSlice('\n')
			line = append(long, line...)
		}
		if len(line) > 0 {
			if !f(Position{name, n}, bytes.TrimSuffix(line, []byte{'\n'})) {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: %s: %w", name, err)
		}
	}
}

// chainLine holds the fields of a line that verification reads.
type chainLine struct {
	Writer     string      `json:"writer"`
	Seq        uint64      `json:"seq"`
	Prev       string      `json:"prev"`
	Action     string      `json:"action"`
	Instance   string      `json:"instance"`
	Checkpoint *Checkpoint `json:"checkpoint"`
}

// line verifies one line; false stops reading.
func (v *Verifier) line(at Position, b []byte) bool {
	if v.rep.Broken != nil {
		return false
	}
	var l chainLine
	if err := json.Unmarshal(b, &l); err != nil {
		v.fail(breakAt(at, "", "not a JSON object: the line is modified, inserted or torn"))
		return false
	}
	if l.Writer == "" || l.Seq == 0 {
		v.fail(breakAt(at, "", "no chain fields (writer, seq): the line is inserted, or written without a chain"))
		return false
	}
	cur := link{seq: l.Seq, hash: sha256.Sum256(b), prev: l.Prev, at: at}
	w := v.writers[l.Writer]
	if s := v.suspect; s != nil {
		if s.w != w {
			return true // only the writer's next line tells
		}
		v.rep.Broken = s.classify(&cur)
		return false
	}
	if w == nil {
		if l.Seq != 1 || l.Prev != "" {
			v.rep.Broken = breakAt(at, l.Writer, "writer %s begins at seq %d, not 1: its first %d lines are missing (deleted, or an older file is not given, or given after this one)", l.Writer, l.Seq, l.Seq-1)
			return false
		}
		w = &writerState{rep: &WriterReport{Writer: l.Writer, Instance: l.Instance, Start: at}}
		v.writers[l.Writer] = w
		v.rep.Writers = append(v.rep.Writers, w.rep)
	} else if l.Seq != w.last.seq+1 || l.Prev != hex.EncodeToString(w.last.hash[:]) {
		v.suspect = &suspect{w: w, next: cur}
		return true
	}
	w.last = cur
	w.rep.Lines, w.rep.End = l.Seq, at
	if l.Checkpoint != nil || l.Action == ActionAuditCheckpoint {
		if br := v.checkpoint(at, l); br != nil {
			v.rep.Broken = br
			return false
		}
		w.rep.Checkpoints++
		w.rep.Signed = l.Seq
	}
	for _, e := range v.external[l.Writer] {
		if e.Seq != l.Seq {
			continue
		}
		if e.Hash != hex.EncodeToString(cur.hash[:]) {
			v.rep.Broken = breakAt(at, l.Writer, "line seq %d of writer %s differs from the one the checkpoint at %s signed: the line is modified or replaced", l.Seq, l.Writer, e.at)
			return false
		}
		e.matched = true
	}
	return true
}

// checkpoint checks a checkpoint line l that follows its chain.
func (v *Verifier) checkpoint(at Position, l chainLine) *Break {
	cp := l.Checkpoint
	switch {
	case cp == nil:
		return breakAt(at, l.Writer, "checkpoint line without a checkpoint")
	case cp.Writer != l.Writer || cp.Seq != l.Seq-1 || cp.Hash != l.Prev:
		return breakAt(at, l.Writer, "checkpoint (writer %s, seq %d) contradicts its chain (writer %s, seq %d after %d)", cp.Writer, cp.Seq, l.Writer, l.Seq, l.Seq-1)
	}
	if v.opts.PublicKey != nil {
		if err := cp.Verify(v.opts.PublicKey); err != nil {
			return breakAt(at, l.Writer, "checkpoint of lines 1-%d of writer %s: %v: the checkpoint is forged, or the lines it covers rewritten", cp.Seq, l.Writer, err)
		}
	}
	return nil
}

// classify names what broke, given the writer's line after s.next (nil at
// the end of the files).
func (s *suspect) classify(after *link) *Break {
	last, next, w := s.w.last, s.next, s.w.rep.Writer
	lastHash, nextHash := hex.EncodeToString(last.hash[:]), hex.EncodeToString(next.hash[:])
	switch {
	case next.seq == last.seq+1:
		if after != nil && after.seq == next.seq && after.prev == lastHash {
			return breakAt(next.at, w, "line inserted: seq %d of writer %s appears again at %s, which follows %s", next.seq, w, after.at, last.at)
		}
		return breakAt(last.at, w, "line modified: its SHA-256 is not the prev of the writer's next line (%s, seq %d of writer %s)", next.at, next.seq, w)
	case next.seq == last.seq && next.hash == last.hash:
		return breakAt(next.at, w, "line inserted: a copy of %s (seq %d of writer %s)", last.at, next.seq, w)
	case next.seq == last.seq && next.prev == last.prev:
		if after != nil && after.seq == next.seq+1 && after.prev == nextHash {
			return breakAt(last.at, w, "line inserted: seq %d of writer %s belongs to %s, which the chain goes on from", last.seq, w, next.at)
		}
		return breakAt(next.at, w, "line inserted: seq %d of writer %s appears again (first at %s)", next.seq, w, last.at)
	case next.seq > last.seq+1:
		if after != nil && after.seq == last.seq+1 {
			return breakAt(next.at, w, "lines reordered: seq %d of writer %s comes before seq %d (%s)", next.seq, w, after.seq, after.at)
		}
		missing := fmt.Sprintf("seq %d", last.seq+1)
		if next.seq-last.seq > 2 {
			missing = fmt.Sprintf("seq %d-%d", last.seq+1, next.seq-1)
		}
		return breakAt(next.at, w, "lines deleted before this line: %s of writer %s missing (after %s)", missing, w, last.at)
	case next.seq < last.seq:
		return breakAt(next.at, w, "lines reordered: seq %d of writer %s comes after seq %d (%s)", next.seq, w, last.seq, last.at)
	default:
		return breakAt(next.at, w, "line inserted: seq %d of writer %s appears again (first at %s)", next.seq, w, last.at)
	}
}

// fail records br unless a suspect, found first, is the break.
func (v *Verifier) fail(br *Break) {
	if v.suspect != nil {
		br = v.suspect.classify(nil)
	}
	v.rep.Broken = br
}

// Finish ends the verification: it classifies a link broken at the end of
// the files and checks that every checkpoint from a second place matched
// a line.
func (v *Verifier) Finish() *Report {
	if v.rep.Broken == nil && v.suspect != nil {
		v.rep.Broken = v.suspect.classify(nil)
	}
	if v.rep.Broken != nil {
		return &v.rep
	}
	for _, e := range v.extOrder {
		if e.matched {
			v.rep.External++
			continue
		}
		w := v.writers[e.Writer]
		if w == nil {
			v.rep.Broken = breakAt(e.at, e.Writer, "checkpoint of lines 1-%d of writer %s, of which the files hold no line: its lines are deleted, or a file is not given", e.Seq, e.Writer)
			return &v.rep
		}
		v.rep.Broken = breakAt(w.rep.End, e.Writer, "writer %s ends at seq %d, but the checkpoint at %s covers lines 1-%d: at least %d lines are cut off after this one", e.Writer, w.rep.Lines, e.at, e.Seq, e.Seq-w.rep.Lines)
		return &v.rep
	}
	return &v.rep
}
