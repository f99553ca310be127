package client

import (
	"crypto/tls"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Endpoints: []string{"http://127.0.0.1:8080", "https://idgen.example/prod/"}}
	with := func(f func(*Config)) Config { c := ok; f(&c); return c }
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"valid", ok, true},
		{"no endpoint", Config{}, false},
		{"no scheme", with(func(c *Config) { c.Endpoints = []string{"127.0.0.1:8080"} }), false},
		{"ftp", with(func(c *Config) { c.Endpoints = []string{"ftp://h"} }), false},
		{"query", with(func(c *Config) { c.Endpoints = []string{"http://h/?x=1"} }), false},
		{"user info", with(func(c *Config) { c.Endpoints = []string{"http://u:p@h"} }), false},
		{"TLS and HTTPClient", with(func(c *Config) { c.HTTPClient = http.DefaultClient; c.TLS = new(tls.Config) }), false},
		{"negative attempts", with(func(c *Config) { c.Retry.MaxAttempts = -1 }), false},
		{"negative backoff", with(func(c *Config) { c.Retry.MaxBackoff = -1 }), false},
		{"negative cooldown", with(func(c *Config) { c.Cooldown = -1 }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("Validate = %v", err)
			}
			if _, nerr := New(tt.cfg); (nerr == nil) != tt.ok {
				t.Fatalf("New = %v", nerr)
			}
		})
	}
	d := Config{Retry: RetryPolicy{BaseBackoff: 5 * time.Second}}.withDefaults()
	if d.Retry.MaxAttempts != DefaultMaxAttempts || d.Retry.MaxBackoff != 5*time.Second || d.Cooldown != DefaultCooldown || d.AttemptTimeout != DefaultAttemptTimeout {
		t.Fatalf("withDefaults = %+v", d)
	}
}
