package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// sink is where the lines go: an *os.File, or a stream for stderr and
// other files that are not regular.
type sink interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
}

var errNoTruncate = errors.New("audit: a stream cannot be truncated")

// stream is a sink that can neither sync nor take back what it was given.
type stream struct {
	io.Writer
	closer io.Closer // nil for stderr: not ours to close
}

func (stream) Sync() error          { return nil }
func (stream) Truncate(int64) error { return errNoTruncate }
func (s stream) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// openSink opens path for appending. For a regular file it also returns
// the size of its whole lines and the bytes of a torn final line it cut
// off: a line without its newline, left by a process that died mid-write.
// Appending after it would glue the next entry to it and lose both.
func openSink(path string) (s sink, size, cut int64, truncatable bool, err error) {
	if path == "-" || path == "" {
		return stream{Writer: os.Stderr}, 0, 0, false, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("audit: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, 0, false, fmt.Errorf("audit: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return stream{Writer: f, closer: f}, 0, 0, false, nil
	}
	whole, err := wholeLinesSize(f, fi.Size())
	if err == nil && whole < fi.Size() {
		if err = f.Truncate(whole); err == nil {
			err = f.Sync()
		}
	}
	if err != nil {
		f.Close()
		return nil, 0, 0, false, fmt.Errorf("audit: cut the torn final line of %s: %w", path, err)
	}
	return f, whole, fi.Size() - whole, true, nil
}

// wholeLinesSize is the offset just past the last newline of the first
// size bytes of f (0 when there is none).
func wholeLinesSize(f io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}
