package allocator

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/generator"
)

// HighWaterStore is the registry's memory of the highest counter a shard's
// ranges reached: kept outside ZooKeeper, so that an ensemble restored from
// an old snapshot is noticed at start (CheckHighWaterOf) instead of handing
// out counters again.
type HighWaterStore interface {
	HighWater(ctx context.Context) (uint64, error)
	RaiseHighWater(ctx context.Context, v uint64) error
}

// CheckHighWaterOf reads the store's mark (within ten seconds) and refuses
// to issue while the ZooKeeper counter is below it (CheckHighWater).
func (a *Allocator) CheckHighWaterOf(ctx context.Context, marks HighWaterStore) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hw, err := marks.HighWater(ctx)
	if err == nil {
		err = a.CheckHighWater(ctx, hw)
	}
	if err != nil {
		return fmt.Errorf("start-up check: refusing to issue: %w", err)
	}
	return nil
}

// Marked claims ranges from src and records each range's end in marks,
// the high-water mark of the next start's check. A mark that cannot be
// written is logged, not returned: the range is quorum-committed and ours,
// and the mark is a safety net.
func Marked(src generator.RangeSource, marks HighWaterStore, log *zap.Logger) generator.RangeSource {
	return markedSource{src: src, marks: marks, log: log}
}

type markedSource struct {
	src   generator.RangeSource
	marks HighWaterStore
	log   *zap.Logger
}

func (m markedSource) ClaimRange(ctx context.Context, n uint64) (generator.Range, error) {
	return m.ClaimRangeIntent(ctx, n, nil)
}

// ClaimRangeIntent passes intent on when src takes one
// (generator.IntentSource), and otherwise claims without announcing.
func (m markedSource) ClaimRangeIntent(ctx context.Context, n uint64, intent func(context.Context, generator.Range) error) (generator.Range, error) {
	var (
		r   generator.Range
		err error
	)
	if is, ok := m.src.(generator.IntentSource); ok && intent != nil {
		r, err = is.ClaimRangeIntent(ctx, n, intent)
	} else {
		r, err = m.src.ClaimRange(ctx, n)
	}
	if err != nil {
		return r, err
	}
	if err := m.marks.RaiseHighWater(ctx, r.End); err != nil {
		m.log.Warn("could not record the high-water mark", zap.Uint64("end", r.End), zap.Error(err))
	}
	return r, nil
}
