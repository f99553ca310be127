package infra

import (
	"os"
	"testing"
)

// readText is the content of the file at path; a failed read fails t.
func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
