package redisharness

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// The harness speaks just enough RESP2 to probe its own processes, so its
// core needs no client library and never shares a client's pools,
// goroutines or logging with the code under test.

// maxBulk bounds one bulk string in a reply; INFO is a few KiB.
const maxBulk = 1 << 20

// errReply is an error reply of the server ("-ERR ...", "-LOADING ...").
type errReply string

func (e errReply) Error() string { return "redisharness: server replied: " + string(e) }

// do dials addr (with TLS when configured), authenticates with
// Options.Password if set, runs cmds in order and returns their replies. The
// whole exchange is bounded by probeTimeout and ctx. An error reply to any
// command is returned as an errReply error.
func (e *env) do(ctx context.Context, addr string, cmds ...[]string) ([]any, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	if err := nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if e.clientTLS != nil {
		tc := tls.Client(nc, e.clientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		nc = tc
	}
	if e.opts.Password != "" {
		cmds = append([][]string{{"AUTH", e.opts.Password}}, cmds...)
	}
	w := bufio.NewWriter(nc)
	for _, cmd := range cmds {
		writeCommand(w, cmd)
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	replies, err := readReplies(bufio.NewReader(nc), len(cmds))
	if err != nil {
		return nil, err
	}
	if e.opts.Password != "" {
		replies = replies[1:]
	}
	return replies, nil
}

func writeCommand(w *bufio.Writer, args []string) {
	fmt.Fprintf(w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(w, "$%d\r\n%s\r\n", len(a), a)
	}
}

// readReply reads one RESP2 reply: a string for simple and bulk strings, an
// int64, []any for arrays, nil for null. An error reply is returned as an
// errReply error after the whole reply has been read.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return nil, errors.New("redisharness: empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, errReply(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := parseLen("bulk", body)
		if err != nil || n < 0 {
			return nil, err // a negative length is a null bulk string
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := parseLen("array", body)
		if err != nil || n < 0 {
			return nil, err // a negative length is a null array
		}
		return readReplies(r, n)
	}
	return nil, fmt.Errorf("redisharness: unexpected reply %q", line)
}

// parseLen parses the length of a bulk string or an array (kind), at most
// maxBulk; a negative one means null.
func parseLen(kind, body string) (int, error) {
	n, err := strconv.Atoi(body)
	if err != nil || n > maxBulk {
		return 0, fmt.Errorf("redisharness: bad %s length %q", kind, body)
	}
	return n, nil
}

// readReplies reads n replies in a row, the commands of a pipeline or the
// elements of an array. An error reply does not stop it, so the stream stays
// in step for what follows; it returns the replies with the first error reply
// once all n are read, or nil and the error of a broken stream.
func readReplies(r *bufio.Reader, n int) ([]any, error) {
	replies := make([]any, n)
	var firstErr error
	for i := range replies {
		v, err := readReply(r)
		var er errReply
		switch {
		case errors.As(err, &er):
			if firstErr == nil {
				firstErr = err
			}
		case err != nil:
			return nil, err
		}
		replies[i] = v
	}
	return replies, firstErr
}

// infoField returns field of an INFO or CLUSTER INFO reply ("" if absent).
func infoField(reply any, field string) string {
	text, _ := reply.(string)
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// pairs turns a flat [k1 v1 k2 v2 ...] array reply into a map.
func pairs(reply any) map[string]string {
	arr, _ := reply.([]any)
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		v, _ := arr[i+1].(string)
		m[k] = v
	}
	return m
}

// hostPort turns a [host port] array reply into "host:port" ("" for nil).
func hostPort(reply any) string {
	arr, _ := reply.([]any)
	if len(arr) != 2 {
		return ""
	}
	host, _ := arr[0].(string)
	port, _ := arr[1].(string)
	return net.JoinHostPort(host, port)
}
