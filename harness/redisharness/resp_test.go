package redisharness

import (
	"bufio"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestReadReplies reads RESP2 streams without a server: every reply type,
// nulls, and error replies, which are returned only once every reply of the
// pipeline (or element of the array) is read, so the stream stays in step.
func TestReadReplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stream  string
		n       int
		want    []any
		wantErr string // "" for none
	}{
		{"simple, int, bulk", "+OK\r\n:42\r\n$5\r\nhello\r\n", 3, []any{"OK", int64(42), "hello"}, ""},
		{"null bulk and null array", "$-1\r\n*-1\r\n", 2, []any{nil, nil}, ""},
		{"nested array", "*2\r\n$1\r\na\r\n*1\r\n:1\r\n", 1, []any{[]any{"a", []any{int64(1)}}}, ""},
		{"error reply mid-pipeline", "+OK\r\n-ERR first\r\n-ERR second\r\n+PONG\r\n", 4, []any{"OK", nil, nil, "PONG"}, "server replied: ERR first"},
		{"error element in an array", "*3\r\n:1\r\n-LOADING\r\n:3\r\n+after\r\n", 2, []any{[]any{int64(1), nil, int64(3)}, "after"}, "server replied: LOADING"},
		{"bad bulk length", "$x\r\n", 1, nil, "bad bulk length"},
		{"array too long", "*2000000\r\n", 1, nil, "bad array length"},
		{"unknown type", "?\r\n", 1, nil, "unexpected reply"},
		{"cut short", "+OK\r\n", 2, nil, "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tc.stream))
			got, err := readReplies(r, tc.n)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("replies = %#v, want %#v", got, tc.want)
			}
			if er := errReply(""); err == nil || errors.As(err, &er) {
				if rest, _ := r.ReadString('\n'); rest != "" {
					t.Errorf("%q left unread", rest)
				}
			}
		})
	}
}
