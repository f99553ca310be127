package zkharness

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestShared: the first Get starts the ensemble, later ones return the same
// one; a server killed by a test is running again at the next Get; Root
// names are distinct and valid znode paths.
func TestShared(t *testing.T) {
	s := &Shared{Options: Options{Servers: 1}}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	e := s.Get(t)
	if s.Get(t) != e {
		t.Fatal("a second Get started another ensemble")
	}
	if err := e.Kill(0); err != nil {
		t.Fatal(err)
	}
	if s.Get(t) != e {
		t.Fatal("Get after a kill returned another ensemble")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.Mode(ctx, 0); err != nil {
		t.Fatalf("the killed server was not restarted: %v", err)
	}
	a, b := Root(t, "x"), Root(t, "x")
	if a == b || !strings.HasPrefix(a, "/x-TestShared-") || strings.ContainsAny(a, " /.") && strings.Count(a, "/") != 1 {
		t.Fatalf("roots %q %q", a, b)
	}
}
