package proc

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// LogMark is a position in a log file: what the file got after it is what
// a process wrote since it started. The zero LogMark names no file and
// reads nothing.
type LogMark struct {
	// Path is the file.
	Path string
	// Off is the file's size when marked.
	Off int64
}

// MarkLog marks path at its current end (0 if it does not exist).
func MarkLog(path string) LogMark { return LogMark{Path: path, Off: fileSize(path)} }

// Since returns what the file got after the mark, at most limit bytes (the
// newest when there are more); nil on any error. A file rolled over since
// the mark is shorter than Off and reads as nothing new.
func (m LogMark) Since(limit int64) []byte {
	if m.Path == "" {
		return nil
	}
	f, err := os.Open(m.Path)
	if err != nil {
		return nil
	}
	defer f.Close()
	off := m.Off
	if size := fileSize(m.Path); size-off > limit {
		off = size - limit
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, limit))
	return b
}

// Tail formats the last n lines of text, read from path, under a header
// naming them: the end of a log for an error message.
func Tail(path string, text []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(text), []byte("\n"))
	lines = lines[max(0, len(lines)-n):]
	return fmt.Sprintf("--- %s (last %d lines)\n%s", path, len(lines), bytes.Join(lines, []byte("\n")))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
