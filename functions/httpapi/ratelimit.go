package httpapi

import (
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters hands out one token bucket per subject. Buckets idle for longer
// than limiterIdle are dropped when the table grows, so the table stays
// bounded by the active subjects.
type limiters struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

const (
	limiterIdle  = 10 * time.Minute
	limiterSweep = 10000 // table size that triggers a sweep
)

func newLimiters(perSecond float64, burst int) *limiters {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = int(math.Ceil(perSecond))
	}
	return &limiters{rate: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

// allow takes a token of subject's bucket; when none is left it returns the
// wait to advise in Retry-After (whole seconds, at least 1).
func (ls *limiters) allow(subject string, now time.Time) (ok bool, retryAfter string) {
	if ls == nil {
		return true, ""
	}
	ls.mu.Lock()
	b := ls.buckets[subject]
	if b == nil {
		if len(ls.buckets) >= limiterSweep && now.Sub(ls.swept) > time.Minute {
			for k, v := range ls.buckets {
				if now.Sub(v.seen) > limiterIdle {
					delete(ls.buckets, k)
				}
			}
			ls.swept = now
		}
		b = &bucket{l: rate.NewLimiter(ls.rate, ls.burst)}
		ls.buckets[subject] = b
	}
	b.seen = now
	ls.mu.Unlock()
	r := b.l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, strconv.Itoa(int(math.Ceil(d.Seconds())))
	}
	return true, ""
}
