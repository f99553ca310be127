package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"github.com/idgen/idgen/shared/platform/audit"
)

const auditUsage = `Usage: idgen audit verify [--public-key FILE] [--checkpoints FILE]... FILE...

Checks the hash chain of every writer in the audit log FILEs, read in the
order given (rotated files oldest first), and the signatures of their
checkpoints. Exit 0 when every chain is whole; 1 at the first broken link,
printed as FILE:LINE: what broke.
`

// auditCmd runs `idgen audit verify`.
func auditCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, auditUsage)
		return errors.New("want the subcommand verify")
	}
	fs := newFlagSet("idgen audit verify", auditUsage, stderr)
	pubFile := fs.String("public-key", "", "PEM Ed25519 public key (idgen keygen: audit-signing.pub) or the signing key itself: check checkpoint signatures")
	var kept []string
	fs.Func("checkpoints", "file of checkpoints kept in a second place (JSON lines of checkpoints, or a shipped copy of the log); repeatable", func(s string) error {
		kept = append(kept, s)
		return nil
	})
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no audit log file given")
	}
	var pub ed25519.PublicKey
	if *pubFile != "" {
		var err error
		if pub, err = audit.LoadPublicKey(*pubFile); err != nil {
			return fmt.Errorf("--public-key: %w", err)
		}
	}
	rep, err := audit.Verify(audit.VerifyOptions{PublicKey: pub}, kept, fs.Args()...)
	if err != nil {
		return err
	}
	printAuditReport(stdout, rep)
	if rep.Broken != nil {
		return rep.Broken
	}
	return nil
}

// printAuditReport prints what was verified of each writer, what no file
// can prove, and the first broken link.
func printAuditReport(w io.Writer, rep *audit.Report) {
	checked := "verified"
	if !rep.Signatures {
		checked = "not signature-checked"
		fmt.Fprintln(w, "checkpoint signatures not checked: no --public-key")
	}
	for _, wr := range rep.Writers {
		fmt.Fprintf(w, "writer %s (instance %s) %s to %s: %d lines, %d checkpoints %s", wr.Writer, wr.Instance, wr.Start, wr.End, wr.Lines, wr.Checkpoints, checked)
		switch n := wr.Unsigned(); {
		case wr.Checkpoints == 0:
			fmt.Fprintf(w, "; no checkpoint: all %d lines are unsigned\n", n)
		case n > 0:
			fmt.Fprintf(w, "; %d lines after the last checkpoint are unsigned\n", n)
		default:
			fmt.Fprintln(w, "; every line is under a checkpoint")
		}
	}
	if rep.External > 0 {
		fmt.Fprintf(w, "%d checkpoints kept elsewhere match the files\n", rep.External)
	}
	for _, wr := range rep.Writers {
		if wr.Unsigned() > 0 && rep.External == 0 && rep.Broken == nil {
			fmt.Fprintln(w, "lines after a writer's last checkpoint can be cut off or rewritten unseen in the file alone: give the checkpoints kept elsewhere (--checkpoints)")
			break
		}
	}
	if rep.Broken != nil {
		fmt.Fprintf(w, "BROKEN %s\n", rep.Broken)
		return
	}
	fmt.Fprintf(w, "OK: %d writers, every chain whole\n", len(rep.Writers))
}
