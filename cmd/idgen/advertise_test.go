package main

import (
	"errors"
	"testing"
)

func TestDefaultAdvertise(t *testing.T) {
	host := func() (string, error) { return "c0ffee", nil }
	broken := func() (string, error) { return "", errors.New("no name") }
	for _, tc := range []struct {
		listen string
		name   func() (string, error)
		want   string
	}{
		{"127.0.0.1:8080", host, "127.0.0.1:8080"},
		{"[::1]:8080", host, "[::1]:8080"},
		{"[::]:8080", host, "c0ffee:8080"},
		{"0.0.0.0:9000", host, "c0ffee:9000"},
		{"[::]:8080", broken, "[::]:8080"},
		{"not an address", host, "not an address"},
	} {
		if got := defaultAdvertise(tc.listen, tc.name); got != tc.want {
			t.Errorf("defaultAdvertise(%q) = %q, want %q", tc.listen, got, tc.want)
		}
	}
}
