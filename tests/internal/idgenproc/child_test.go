package idgenproc

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestExcerpt(t *testing.T) {
	s := "1\n2\n3\n4\n5\n"
	cases := []struct {
		h, n int
		want string
	}{
		{2, 3, "1\n2\n3\n4\n5"},
		{1, 1, "1\n[... 3 lines ...]\n5"},
		{0, 2, "[... 3 lines ...]\n4\n5"},
	}
	for _, c := range cases {
		if got := Excerpt(s, c.h, c.n); got != c.want {
			t.Errorf("Excerpt(%d, %d) = %q, want %q", c.h, c.n, got, c.want)
		}
	}
}

func TestServingAddr(t *testing.T) {
	cases := []struct {
		name, log, want string
	}{
		{"none yet", `{"msg":"starting"}` + "\n", ""},
		{"serving", `{"msg":"starting"}` + "\n" + `{"level":"info","msg":"serving","addr":"127.0.0.1:4242"}` + "\n", "127.0.0.1:4242"},
		{"line not ended", `{"msg":"serving","addr":"127.0.0.1:4242"}`, ""},
		{"not JSON", `"msg":"serving" addr 1` + "\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ServingAddr([]byte(c.log)); got != c.want {
				t.Errorf("ServingAddr = %q, want %q", got, c.want)
			}
		})
	}
}

// A child that loses its port is started again on a fresh one; any other
// failure ends Launch at once.
func TestLaunchRetriesOnlyALostPort(t *testing.T) {
	for _, c := range []struct {
		name, stderr string
		want         int32
	}{
		{"port lost", "listen: address already in use", Attempts},
		{"other failure", "bad flag", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var starts atomic.Int32
			_, err := Launch(context.Background(), Options{
				Name: "sh", Bin: "/bin/sh", ReadyTimeout: 10 * time.Second,
				Args: func(listen, _ string) []string {
					starts.Add(1)
					return []string{"-c", "echo '" + c.stderr + " " + listen + "' >&2; exit 3"}
				},
			})
			if err == nil || !strings.Contains(err.Error(), c.stderr) {
				t.Fatalf("Launch error %v, want one showing %q", err, c.stderr)
			}
			if got := starts.Load(); got != c.want {
				t.Errorf("%d starts, want %d", got, c.want)
			}
		})
	}
}
