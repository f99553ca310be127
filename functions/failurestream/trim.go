package failurestream

import (
	"context"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// trimSource removes from the stream KEYS[1] every entry that every
// consumer group of it has acknowledged, and returns how many it removed.
// A group's bound is its oldest pending entry (delivered, not yet
// acknowledged: in flight, at a dead consumer, or on its way to the
// dead-letter stream), or, with nothing pending, its last delivered entry
// (everything after it is undelivered). XTRIM MINID removes the entries
// below the smallest bound, so nothing a group still has to handle goes,
// nor anything after it. A stream without groups is left alone (failures
// reported before the first worker ran wait for it).
//
// It runs as one script: a group cannot deliver or claim an entry below
// the bound between reading the bounds and trimming (a group only
// delivers entries past its last delivered one, and only pending entries
// can be claimed). The stream is one key, so it runs in Cluster mode too.
//
// IDs are compared as pairs of decimal strings without leading zeros (a
// shorter one is smaller): exact for any 64-bit part, where Lua numbers
// round above 2^53.
const trimSource = `
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, seq
end
local function numless(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function less(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  if am ~= bm then return numless(am, bm) end
  return numless(as, bs)
end
local minid
for _, g in ipairs(groups) do
  local name, pending, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i+1]
    elseif g[i] == 'pending' then pending = g[i+1]
    elseif g[i] == 'last-delivered-id' then last = g[i+1] end
  end
  local bound = last
  if pending > 0 then
    bound = redis.call('XPENDING', KEYS[1], name)[2]
  end
  if minid == nil or less(bound, minid) then minid = bound end
end
if minid == '0-0' then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
`

var trimScript = redis.NewScript(trimSource)

// trimmed counts what a trim removed; a failed trim is logged and changes
// nothing (the next one catches up: the bound only moves forward).
func (w *Worker) trimmed(cmd *redis.Cmd) {
	n, err := cmd.Int64()
	if err != nil {
		w.log.Warn("trimming the acknowledged entries of the stream failed", zap.String("stream", w.cfg.Stream), zap.Error(err))
		return
	}
	w.m.trimmed.Add(float64(n))
}

// trim runs trimSource on its own (EVALSHA, then EVAL when the server
// lacks the script).
func (w *Worker) trim(ctx context.Context) {
	w.trimmed(trimScript.Run(ctx, w.rdb, []string{w.cfg.Stream}))
}
