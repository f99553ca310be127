package redisstore

import "github.com/redis/go-redis/v9"

// batchScript runs the sub-operations of one flush (one call per hash slot in
// Cluster mode, one call for the whole batch otherwise) in order, each
// checking everything before it writes anything, and returns one result per
// sub-operation:
//
//	'R' register: idem key index (0 = none), idem value, idem TTL ms, now ms,
//	    n, n × (bucket key index, field, value), m, m × (zset key index,
//	    score, member).
//	    → 0 written (or already written by this very call: a retry);
//	      the idempotency value of a live entry of another call (a replay:
//	      nothing written); i > 0 when record i is held by another value
//	      (a collision: nothing written).
//	'S' register one record, nothing else (no idempotency entry, no
//	    deadline: the common case, in 4 arguments instead of 10): bucket
//	    key index, field, value → 0 written (or already written by this
//	    very call), 1 held by another value (nothing written).
//	'C' compare-and-set: bucket key index (0 = none), field, old value
//	    ('' = must be absent), new value ('' = delete), TTL ms, zset key
//	    index (0 = none), member to remove from it, the counter's state in
//	    the bucket's map after the write (registry.CounterState; 0 for a
//	    delete).
//	    → 0 done (or already done: the field holds the new value), -1 the
//	      field holds something else than old (nothing written).
//	'H' raise: key index, 16 hex digits → 0 (the mark never goes down).
//
// ARGV[1] is '1' in durable mode: a replay then rewrites the entry it
// answers (same value, same TTL) so that the WAIT after the script covers
// it. ARGV[2] is the record buckets' TTL in ms. A bucket's TTL is only ever
// extended (a tombstone's longer TTL survives later writes).
//
// State maps: a bucket key index b names the bucket KEYS[b] and its state
// map KEYS[b+1] (call.bucket adds both). Every field the script writes or
// deletes sets its byte of the map: CounterPending for a field a
// registration writes (a resend, which finds its own value, writes
// nothing), the 'C' state for a compare-and-set, CounterFree for a delete
// (and for a registration's field undone by a collision). The bytes are
// gathered per map and written after the last sub-operation, one SETRANGE
// per run of consecutive counters, so that a batch of sequential IDs costs
// a few commands per bucket and none per record. A map the script creates
// is padded with zero bytes to registry.StateMapSize; a map's TTL follows its
// bucket's (extended whenever the bucket's is, never shortened); the map
// of a bucket that a delete emptied (and so Redis removed) is removed
// with it. The maps are written even when a sub-operation fails with an
// error reply (a key of the wrong type), so that what the sub-operations
// before it wrote has its map when the error is returned.
//
// The shebang makes Redis refuse the whole script up front under OOM or
// min-replicas-to-write, instead of failing at its first write.
const batchSource = `#!lua
local durable = ARGV[1] == '1'
local rttl = tonumber(ARGV[2])
local out = {}
local p = 3
-- buckets (by key index) whose TTL this call already extended to rttl
-- (TTLs only grow)
local seen = {}
local function keep(k, ttl)
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
local function expiry(v)
  local e = 0
  for i = 1, 8 do e = e * 256 + string.byte(v, i) end
  return e
end
-- state maps, by bucket key index: offset -> state to write, the buckets
-- in first-touch order, the longest TTL a bucket was kept to in this call,
-- and the buckets a field was deleted from
local maps, order, ttls, emptied = {}, {}, {}, {}
local function touch(b)
  local m = maps[b]
  if not m then
    m = {}
    maps[b] = m
    order[#order+1] = b
  end
  return m
end
local function hold(b, ttl)
  touch(b)
  keep(KEYS[b], ttl)
  if not ttls[b] or ttls[b] < ttl then ttls[b] = ttl end
end
local function writeMaps()
  for _, b in ipairs(order) do
    local mk, ttl = KEYS[b+1], ttls[b]
    if emptied[b] and redis.call('EXISTS', KEYS[b]) == 0 then
      redis.call('DEL', mk)
    elseif ttl or redis.call('EXISTS', mk) == 1 then
      local m, n, o = maps[b], 0, 0
      while o < 128 do
        if m[o] then
          local run, from = {}, o
          while m[o] do
            run[#run+1] = m[o]
            o = o + 1
          end
          n = redis.call('SETRANGE', mk, from, string.char(unpack(run)))
        else
          o = o + 1
        end
      end
      if n > 0 and n < 128 then
        redis.call('SETRANGE', mk, n, string.rep(string.char(0), 128 - n))
      end
      -- GT leaves a key without a TTL alone: a map made by this call
      if ttl and redis.call('PEXPIRE', mk, ttl, 'GT') == 0 and redis.call('PTTL', mk) == -1 then
        redis.call('PEXPIRE', mk, ttl)
      end
    end
  end
end
local function run()
  while p <= #ARGV do
    local kind = ARGV[p]
    if kind == 'S' then
      local b = tonumber(ARGV[p+1])
      local k, f, v = KEYS[b], ARGV[p+2], ARGV[p+3]
      p = p + 4
      local res = 0
      if redis.call('HSETNX', k, f, v) == 1 then
        (maps[b] or touch(b))[tonumber(f)] = 1
      elseif redis.call('HGET', k, f) ~= v then
        res = 1
      end
      if res == 0 and not seen[b] then
        seen[b] = true
        hold(b, rttl)
      end
      out[#out+1] = res
    elseif kind == 'R' then
      local ik, iv, ittl, now = tonumber(ARGV[p+1]), ARGV[p+2], tonumber(ARGV[p+3]), tonumber(ARGV[p+4])
      local nrec = tonumber(ARGV[p+5])
      local rp = p + 6
      local ndl = tonumber(ARGV[rp + 3*nrec])
      local dp = rp + 3*nrec + 1
      p = dp + 3*ndl
      local res = 0
      local wrote = {}
      if ik > 0 then
        local cur = redis.call('GET', KEYS[ik])
        if cur and cur ~= iv and #cur >= 8 and expiry(cur) > now then
          res = cur
          if durable then redis.call('SET', KEYS[ik], cur, 'KEEPTTL', 'XX') end
        end
      end
      if res == 0 then
        -- HSETNX writes the common case in one call; a field already there
        -- is ours (a resend: same value) or a collision, which undoes what
        -- this op wrote (nobody saw it: the script is atomic). A field is
        -- marked pending as soon as it is written (an error reply further
        -- on leaves it written) and free again when it is undone.
        for i = 0, nrec - 1 do
          local q = rp + 3*i
          local b = tonumber(ARGV[q])
          local k, f, v = KEYS[b], ARGV[q+1], ARGV[q+2]
          if redis.call('HSETNX', k, f, v) == 0 then
            if redis.call('HGET', k, f) ~= v then
              res = i + 1
              for j = 0, i - 1 do
                if wrote[j] then
                  local u = rp + 3*j
                  local bj = tonumber(ARGV[u])
                  redis.call('HDEL', KEYS[bj], ARGV[u+1])
                  touch(bj)[tonumber(ARGV[u+1])] = 0
                  emptied[bj] = true
                end
              end
              break
            end
            wrote[i] = false
          else
            wrote[i] = true
            touch(b)[tonumber(f)] = 1
          end
        end
      end
      if res == 0 then
        for i = 0, nrec - 1 do
          local b = tonumber(ARGV[rp + 3*i])
          if not seen[b] then
            seen[b] = true
            hold(b, rttl)
          end
        end
        for i = 0, ndl - 1 do
          local q = dp + 3*i
          redis.call('ZADD', KEYS[tonumber(ARGV[q])], ARGV[q+1], ARGV[q+2])
        end
        if ik > 0 and ittl > 0 then redis.call('SET', KEYS[ik], iv, 'PX', ittl) end
      end
      out[#out+1] = res
    elseif kind == 'C' then
      local b, f, old, new = tonumber(ARGV[p+1]), ARGV[p+2], ARGV[p+3], ARGV[p+4]
      local ttl, zk, m, st = tonumber(ARGV[p+5]), tonumber(ARGV[p+6]), ARGV[p+7], tonumber(ARGV[p+8])
      p = p + 9
      local res = 0
      if b > 0 then
        local key = KEYS[b]
        local cur = redis.call('HGET', key, f)
        if new ~= '' and cur == new then
          res = 0
        elseif (old == '' and cur) or (old ~= '' and cur ~= old) then
          res = -1
        elseif new == '' then
          redis.call('HDEL', key, f)
          touch(b)[tonumber(f)] = 0
          emptied[b] = true
        else
          redis.call('HSET', key, f, new)
          touch(b)[tonumber(f)] = st
          hold(b, ttl)
        end
      end
      if res == 0 and zk > 0 then redis.call('ZREM', KEYS[zk], m) end
      out[#out+1] = res
    elseif kind == 'H' then
      local k, v = KEYS[tonumber(ARGV[p+1])], ARGV[p+2]
      p = p + 3
      local cur = redis.call('GET', k)
      if not cur or cur < v then redis.call('SET', k, v) end
      out[#out+1] = 0
    else
      return redis.error_reply('ERR idgen batch: bad op ' .. tostring(kind))
    end
  end
end
local ok, res = pcall(run)
writeMaps()
if not ok then
  if type(res) == 'table' and res.err then return res end
  return redis.error_reply('ERR idgen batch: ' .. tostring(res))
end
if res then return res end
return out
`

var batchScript = redis.NewScript(batchSource)
