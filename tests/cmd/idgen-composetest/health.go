package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// containerHealth is what `docker inspect` says of one container's health.
type containerHealth struct {
	ID     string
	Name   string
	State  string // running, exited, ...
	Health string // starting, healthy, unhealthy
	Streak int    // consecutive failed probes
	Probe  string // the last probe: exit code, duration, output
}

// parseInspect reads the JSON array `docker inspect` prints.
func parseInspect(b []byte) ([]containerHealth, error) {
	var raw []struct {
		ID    string `json:"Id"`
		Name  string `json:"Name"`
		State struct {
			Status string `json:"Status"`
			Health *struct {
				Status        string `json:"Status"`
				FailingStreak int    `json:"FailingStreak"`
				Log           []struct {
					Start    time.Time `json:"Start"`
					End      time.Time `json:"End"`
					ExitCode int       `json:"ExitCode"`
					Output   string    `json:"Output"`
				} `json:"Log"`
			} `json:"Health"`
		} `json:"State"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("docker inspect: %w", err)
	}
	out := make([]containerHealth, len(raw))
	for i, c := range raw {
		h := containerHealth{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), State: c.State.Status}
		if hs := c.State.Health; hs != nil {
			h.Health, h.Streak = hs.Status, hs.FailingStreak
			if n := len(hs.Log); n > 0 {
				p := hs.Log[n-1]
				h.Probe = fmt.Sprintf("exit %d after %v: %s", p.ExitCode,
					p.End.Sub(p.Start).Round(time.Millisecond), tailOf(strings.TrimSpace(p.Output), 300))
			}
		}
		out[i] = h
	}
	return out, nil
}

// inspect reads the health of the given containers.
func (r *run) inspect(ctx context.Context, ids []string) ([]containerHealth, error) {
	out, err := docker(ctx, append([]string{"inspect"}, ids...)...)
	if err != nil {
		return nil, err
	}
	return parseInspect([]byte(out))
}

// healthWatch records, for one service, every time one of its running
// containers turns unhealthy and when it recovers, with the probe that
// decided it. A probe that timed out on a starved host and an instance that
// really reported itself down read differently there.
type healthWatch struct {
	mu     sync.Mutex
	last   map[string]string // container ID -> health at the previous poll
	events []string
}

// observe folds one poll into the record; at is the time since the run began.
func (w *healthWatch) observe(at time.Duration, cs []containerHealth) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[string]string{}
	}
	for _, c := range cs {
		if c.State != "running" {
			// Docker marks a container unhealthy when it stops (its
			// health monitor closes): that says nothing of the instance.
			delete(w.last, c.ID)
			continue
		}
		prev := w.last[c.ID]
		w.last[c.ID] = c.Health
		switch {
		case c.Health == "unhealthy" && prev != "unhealthy":
			w.events = append(w.events, fmt.Sprintf("%.0fs %s unhealthy after %d failed probes; last probe %s",
				at.Seconds(), c.Name, c.Streak, c.Probe))
		case c.Health == "healthy" && prev == "unhealthy":
			w.events = append(w.events, fmt.Sprintf("%.0fs %s healthy again", at.Seconds(), c.Name))
		}
	}
}

func (w *healthWatch) report() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.events...)
}

// watchHealth polls the service's containers every second until ctx ends.
func (r *run) watchHealth(ctx context.Context, service string, w *healthWatch) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		ids, err := r.containers(ctx, service)
		if err != nil || len(ids) == 0 {
			continue
		}
		if cs, err := r.inspect(ctx, ids); err == nil { // err: one removed since ps
			w.observe(time.Since(r.start), cs)
		}
	}
}
