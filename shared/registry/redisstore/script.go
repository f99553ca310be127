package redisstore

import "github.com/redis/go-redis/v9"

// batchScript runs the sub-operations of one flush (one call per hash slot in
// Cluster mode, one call for the whole batch otherwise) in order, each
// checking everything before it writes anything, and returns one result per
// sub-operation:
//
//	'R' register: idem key index (0 = none), idem value, idem TTL ms, now ms,
//	    g, g × (bucket key index, first offset, count, value), m, m × (zset
//	    key index, score, member). Each of the g groups is count records of
//	    one bucket with the same value in the consecutive fields first
//	    offset..first offset+count-1 (a batch of IDs stamped in the same
//	    millisecond is a group per bucket); records are numbered across
//	    the groups in order, from 1.
//	    → 0 written (or already written by this very call: a retry);
//	      the idempotency value of a live entry of another call (a replay:
//	      nothing written); i > 0 when record i is held by another value
//	      (a collision: nothing written).
//	'S' register one record, nothing else (no idempotency entry, no
//	    deadline: the common case, in 4 arguments instead of 10): bucket
//	    key index, field, value → 0 written (or already written by this
//	    very call), 1 held by another value (nothing written).
//	'G' register count records, one each, nothing else, as count 'S' in
//	    the consecutive fields first offset..first offset+count-1 with
//	    the same value: bucket key index, first offset, count, value →
//	    count results, one per record, as 'S' answers them.
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
// extended (a tombstone's longer TTL survives later writes), and when it is,
// to 1 % more than asked, so that the calls that write the same bucket
// next (a bucket holds 128 sequential IDs) leave it as it is.
//
// State maps: a bucket key index b names the bucket KEYS[b] and its state
// map KEYS[b+1] (call.bucket adds both). A registration's fields are marked
// pending by 'M' sub-operations that the Go side appends after every other
// (call.seal), one a run of consecutive fields of one bucket:
//
//	'M' bucket key index, first offset, length → no result.
//
// so that a batch of sequential IDs costs one SETRANGE per bucket and no
// work per record in the script. A resend, which finds its own value, is
// marked pending again, as it already is. A compare-and-set writes its
// byte (the state of the new value, CounterFree for a delete) when it
// writes the field, and 'M' leaves that field. A registration that wrote
// nothing (a collision, a replay) records its fields as skipped: 'M'
// marks such a field pending only when it is held with a free byte
// (another registration of the call wrote it), and leaves it otherwise.
// After the last sub-operation each map the call wrote, or whose bucket's
// TTL it extended, is padded with zero bytes to registry.StateMapSize and
// given its bucket's TTL, or deleted with its bucket when a delete emptied
// it. ARGV[3] is the index of the first 'M' (0: none): when a
// sub-operation fails with an error reply (a key of the wrong type), the
// fields the 'M' runs name that are held and whose byte is free are marked
// pending and their buckets get their TTL, so that what was written
// before the error has its map. A call writes map bytes only for a bucket
// that had a complete map, or did not exist, when the call first touched
// it: a bucket holding records without a complete map (written before
// state maps, or its map lost) keeps what it has, since a map of this
// call's bytes alone would tell its other held counters free.
//
// A group whose fields are all free (a 'R' group, or the records of a
// 'G') is written as one run-length record (a run: first offset, count,
// value) appended to the bucket's field 'r' (RunsField), instead of count
// fields: a field is free when the bucket's map (complete, 128 bytes, when
// the call first touches the bucket) has a zero byte for it, or the bucket
// did not exist then, no sub-operation of this call has written it (the
// call's own writes reach the map only at its end), and the bucket itself
// holds it neither as a field nor in a run (so a map that is wrong never
// lets a run over a held counter). Any other group is written field by
// field with HSETNX, which finds a resend's own values and collisions.
//
// A counter is held when its field exists or a run covers it; its value is
// the field's when there is one (a compare-and-set over a run writes the
// field, and a run whose counters all have fields goes), else the run's.
// Every check of a field (HSETNX, the compare-and-set, the marks) reads
// both, and a delete also takes the counter out of its run (splitting
// it). A collision's rollback restores the runs as they were before the
// op.
//
// The shebang makes Redis refuse the whole script up front under OOM or
// min-replicas-to-write, instead of failing at its first write.
const batchSource = `#!lua
local durable = ARGV[1] == '1'
local rttl = tonumber(ARGV[2])
local mstart = tonumber(ARGV[3])
local out = {}
local p = 4
-- buckets (by key index) whose TTL this call already extended to rttl
-- (TTLs only grow)
local seen = {}
-- the TTL of each bucket this call kept and whether it extended it, the
-- length of each map it wrote (by bucket key index), and the fields of
-- registrations that wrote nothing (bucket index -> offset -> true)
local bttl, extended, fresh, maplen, skip, cwrote = {}, {}, {}, {}, {}, {}
-- keep extends a bucket's TTL to at least ttl: to ttl and 1 % more, so
-- that the next writes of the bucket (a bucket is written by a few calls
-- in a row) find it long enough and extend nothing
local function keep(b, ttl)
  local cur = redis.call('PTTL', KEYS[b])
  -- no TTL: made by this call (every bucket gets one), so its map is to
  -- be made too, unless one is there (a bucket left without a TTL by an
  -- older failed call)
  if cur == -1 and redis.call('EXISTS', KEYS[b+1]) == 0 then fresh[b] = true end
  if cur < ttl then
    cur = ttl + math.floor(ttl / 100)
    redis.call('PEXPIRE', KEYS[b], cur)
    extended[b] = true
  end
  bttl[b] = cur
end
local function expiry(v)
  local e = 0
  for i = 1, 8 do e = e * 256 + string.byte(v, i) end
  return e
end
-- tail: a write of this call reached the map's last byte (its answer, 128,
-- does not tell whether the map was there before)
local tail = {}
-- auth[b]: whether the map of bucket b tells which fields were free when
-- this call first touched the bucket ('map': a complete map; 'empty': no
-- bucket; false: neither); wset[b]: the offsets this call wrote since,
-- as ranges {lo, hi}
local auth, wset = {}, {}
local function setmap(b, off, bytes)
  -- a bucket that held records without a complete map keeps the map it
  -- has: bytes for this call's fields alone would tell the others free
  if auth[b] ~= 'map' and auth[b] ~= 'empty' then return end
  local n = redis.call('SETRANGE', KEYS[b+1], off, bytes)
  if not maplen[b] or maplen[b] < n then maplen[b] = n end
  if off + #bytes == 128 then tail[b] = true end
end
-- sub returns tables[b], made empty on first use
local function sub(tables, b)
  local t = tables[b]
  if not t then
    t = {}
    tables[b] = t
  end
  return t
end
local function flag(tables, b, f) sub(tables, b)[tonumber(f)] = true end
local function skipped(b, f) flag(skip, b, f) end
local function cwritten(b, f) flag(cwrote, b, f) end
local one, zero = string.char(1), string.char(0)
-- names[o]: the field name of offset o, made once per call (name)
local names = {}
local function name(o)
  local f = names[o]
  if not f then
    f = tostring(o)
    names[o] = f
  end
  return f
end
-- Runs: the field 'r' of a bucket holds its run-length records, entries
-- of first offset (1 byte), count (1 byte), value length (2 bytes,
-- big-endian) and value. rraw[b] is that field as this call last read or
-- wrote it (false: absent), rlist[b] its entries {lo, hi, value}.
local rraw, rlist = {}, {}
local function runs(b)
  local t = rlist[b]
  if t then return t end
  local s = rraw[b]
  if s == nil then
    s = redis.call('HGET', KEYS[b], 'r')
    rraw[b] = s
  end
  t = {}
  if s then
    local i = 1
    while i <= #s do
      local lo, n, l1, l2 = string.byte(s, i, i + 3)
      local l = l1 * 256 + l2
      t[#t+1] = {lo, lo + n - 1, string.sub(s, i + 4, i + 3 + l)}
      i = i + 4 + l
    end
  end
  rlist[b] = t
  return t
end
local function encrun(lo, hi, v)
  return string.char(lo, hi - lo + 1, math.floor(#v / 256), #v % 256) .. v
end
-- putruns stores s as the runs of bucket b ('' or false: none)
local function putruns(b, s)
  if s and s ~= '' then
    redis.call('HSET', KEYS[b], 'r', s)
  else
    redis.call('HDEL', KEYS[b], 'r')
    s = false
  end
  rraw[b], rlist[b] = s, nil
end
local function addrun(b, lo, n, v)
  runs(b)
  putruns(b, (rraw[b] or '') .. encrun(lo, lo + n - 1, v))
end
-- runvalue is the value of the run of bucket b that covers offset o,
-- false when none does
local function runvalue(b, o)
  for _, r in ipairs(runs(b)) do
    if r[1] <= o and o <= r[2] then return r[3] end
  end
  return false
end
-- unrun takes offset o out of the run of bucket b that covers it
local function unrun(b, o)
  local parts, hit = {}, false
  for _, r in ipairs(runs(b)) do
    if r[1] <= o and o <= r[2] then
      hit = true
      if r[1] < o then parts[#parts+1] = encrun(r[1], o - 1, r[3]) end
      if o < r[2] then parts[#parts+1] = encrun(o + 1, r[2], r[3]) end
    else
      parts[#parts+1] = encrun(r[1], r[2], r[3])
    end
  end
  if hit then putruns(b, table.concat(parts)) end
end
-- repack rewrites bucket b as it is (same fields and values, same expiry):
-- Redis makes a hash a listpack again only when it is written anew
local function repack(b)
  local k = KEYS[b]
  local at = redis.call('PEXPIRETIME', k)
  local h = redis.call('HGETALL', k)
  if #h == 0 then return end
  redis.call('DEL', k)
  redis.call('HSET', k, unpack(h))
  if at > 0 then redis.call('PEXPIREAT', k, at) end
end
-- dropcovered takes out of bucket b's runs the run covering offset o
-- when every counter of it has a field of its own (the compare-and-sets
-- that wrote them, a commit of each ID say, went over it): such a run
-- holds nothing a read sees. When the last run goes, the bucket is
-- repacked: a bucket whose runs passed 64 bytes became a hash table, and
-- its 128 fields are a listpack, as when written field by field.
local function dropcovered(b, o)
  for i, r in ipairs(runs(b)) do
    if r[1] <= o and o <= r[2] then
      if redis.call('HLEN', KEYS[b]) - 1 < r[2] - r[1] + 1 then return end
      local f = {}
      for x = r[1], r[2] do f[#f+1] = name(x) end
      for _, v in ipairs(redis.call('HMGET', KEYS[b], unpack(f))) do
        if not v then return end
      end
      local parts = {}
      for j, q in ipairs(runs(b)) do
        if j ~= i then parts[#parts+1] = encrun(q[1], q[2], q[3]) end
      end
      putruns(b, table.concat(parts))
      if not rraw[b] then repack(b) end
      return
    end
  end
end
-- held is the value of field f (offset o) of bucket b: the field's own (a
-- record of its own, or a later write over a run), else its run's, false
-- when neither holds it
local function held(b, f, o)
  local v = redis.call('HGET', KEYS[b], f)
  if v then return v end
  return runvalue(b, o)
end
-- setnx writes v into field f (offset o) of bucket b unless it is held:
-- 1 written, 0 held by v (a resend), -1 held by another value
local function setnx(b, f, o, v)
  local k = KEYS[b]
  if redis.call('HSETNX', k, f, v) == 1 then
    local rv = runvalue(b, o)
    if not rv then return 1 end
    -- a run holds it: the field goes again
    redis.call('HDEL', k, f)
    if rv == v then return 0 end
    return -1
  end
  if redis.call('HGET', k, f) == v then return 0 end
  return -1
end
local function touch(b)
  if auth[b] ~= nil then return end
  local ml = redis.call('STRLEN', KEYS[b+1])
  if ml == 128 then
    auth[b] = 'map'
  elseif ml == 0 and redis.call('EXISTS', KEYS[b]) == 0 then
    auth[b] = 'empty'
  else
    auth[b] = false
  end
end
-- addrange adds lo..hi to the ranges t, joining it to the last one when
-- they meet
local function addrange(t, lo, hi)
  local last = t[#t]
  if last and last[2] == lo - 1 then
    last[2] = hi
  else
    t[#t+1] = {lo, hi}
  end
end
local function written(b, lo, hi) addrange(sub(wset, b), lo, hi) end
-- allfree: whether the fields lo..lo+n-1 of bucket b are free (see
-- above). The map and the call's own writes answer most groups that are
-- not; a group they pass is checked against the bucket itself (no run
-- covers a field of it, and no field of it exists), so that a map that
-- tells a held counter free (one padded by an older idgen, say) never
-- lets a run be written over it.
local function allfree(b, lo, n)
  touch(b)
  local a = auth[b]
  if not a then return false end
  if a == 'map' and redis.call('GETRANGE', KEYS[b+1], lo, lo + n - 1) ~= string.rep(zero, n) then
    return false
  end
  local w, hi = wset[b], lo + n - 1
  if w then
    for _, r in ipairs(w) do
      if r[1] <= hi and r[2] >= lo then return false end
    end
  end
  for _, r in ipairs(runs(b)) do
    if r[1] <= hi and r[2] >= lo then return false end
  end
  local nf = redis.call('HLEN', KEYS[b])
  if rraw[b] then nf = nf - 1 end
  if nf > 0 then
    local f = {}
    for o = lo, hi do f[#f+1] = name(o) end
    for _, v in ipairs(redis.call('HMGET', KEYS[b], unpack(f))) do
      if v then return false end
    end
  end
  return true
end
-- byte is the map byte of field o of bucket b, '' for none
local function byte(b, o)
  return redis.call('GETRANGE', KEYS[b+1], o, o)
end
-- mark marks pending the fields lo..lo+n-1 of bucket b, which
-- registrations of this call wrote or found as theirs (a resend), except
-- the fields a compare-and-set of this call wrote (its byte is the
-- field's last state) and the fields of registrations that wrote nothing
-- (a collision, a replay): such a field is pending when another
-- registration of this call wrote it (it exists, and its byte is still
-- free), and keeps its byte otherwise.
local function mark(b, lo, n)
  local t, w = skip[b], cwrote[b]
  if not t and not w and fresh[b] and not maplen[b] then
    -- the whole map in one write
    setmap(b, 0, string.rep(zero, lo) .. string.rep(one, n) .. string.rep(zero, 128 - lo - n))
    return
  end
  if not t and not w then
    setmap(b, lo, string.rep(one, n))
    return
  end
  for o = lo, lo + n - 1 do
    if w and w[o] then
      -- written by a compare-and-set
    elseif t and t[o] then
      if held(b, tostring(o), o) then
        local cur = byte(b, o)
        if cur == '' or cur == zero then setmap(b, o, one) end
      end
    else
      setmap(b, o, one)
    end
  end
end
local function finishMaps()
  -- a bucket whose TTL this call extended and whose map it did not write
  -- (its marks all kept their bytes) still extends its map's
  for b in pairs(extended) do
    if not maplen[b] then maplen[b] = 128 end
  end
  for b, n in pairs(maplen) do
    local mk = KEYS[b+1]
    local ttl = bttl[b] or redis.call('PTTL', KEYS[b])
    if ttl == -2 then
      redis.call('DEL', mk)
    else
      if n < 128 then redis.call('SETRANGE', mk, n, string.rep(zero, 128 - n)) end
      -- the bucket's TTL when this call set it; else a map that this call
      -- may have made (shorter than 128 bytes before, or as long as the
      -- bytes written up to the last offset) gets it unless it has one: an
      -- older map's TTL was set with its bucket's
      if ttl > 0 and extended[b] then
        redis.call('PEXPIRE', mk, ttl)
      elseif ttl > 0 and (n < 128 or tail[b]) then
        redis.call('PEXPIRE', mk, ttl, 'NX')
      end
    end
  end
end
-- after an error reply: mark pending the fields of the 'M' runs that
-- exist and whose byte is free
local function recoverRun(b, lo, n)
  local kept = false
  for o = lo, lo + n - 1 do
    if held(b, tostring(o), o) then
      local cur = byte(b, o)
      if cur == '' or cur == zero then setmap(b, o, one) end
      -- the failed op wrote the field before its keep: the bucket gets
      -- its TTL here
      if not kept and not seen[b] then
        kept = true
        seen[b] = true
        keep(b, rttl)
      end
    end
  end
end
-- a bucket that fails again (the key of the wrong type that failed the
-- call) is passed over, so that the other buckets' maps are completed
local function recoverMarks()
  if mstart == 0 then return end
  for q = mstart, #ARGV, 4 do
    pcall(recoverRun, tonumber(ARGV[q+1]), tonumber(ARGV[q+2]), tonumber(ARGV[q+3]))
  end
end
-- single registers value v in field f (offset o) of bucket b unless it
-- is held: 0 written (or held by v: a resend), 1 held by another value
-- (a collision: the field is recorded as skipped)
local function single(b, f, o, v)
  local w = setnx(b, f, o, v)
  if w == 1 then
    written(b, o, o)
  elseif w == -1 then
    skipped(b, o)
    return 1
  end
  return 0
end
-- keepOnce gives bucket b its TTL once per call
local function keepOnce(b)
  if not seen[b] then
    seen[b] = true
    keep(b, rttl)
  end
end
local function run()
  while p <= #ARGV do
    local kind = ARGV[p]
    if kind == 'S' then
      local b = tonumber(ARGV[p+1])
      local f, v = ARGV[p+2], ARGV[p+3]
      p = p + 4
      touch(b)
      local res = single(b, f, tonumber(f), v)
      if res == 0 then keepOnce(b) end
      out[#out+1] = res
    elseif kind == 'G' then
      local b, lo, n, v = tonumber(ARGV[p+1]), tonumber(ARGV[p+2]), tonumber(ARGV[p+3]), ARGV[p+4]
      p = p + 5
      local kept = false
      if #v < 65536 and allfree(b, lo, n) then
        addrun(b, lo, n, v)
        written(b, lo, lo + n - 1)
        for _ = 1, n do out[#out+1] = 0 end
        kept = true
      else
        touch(b)
        for o = lo, lo + n - 1 do
          local res = single(b, name(o), o, v)
          kept = kept or res == 0
          out[#out+1] = res
        end
      end
      if kept then keepOnce(b) end
    elseif kind == 'R' then
      local ik, iv, ittl, now = tonumber(ARGV[p+1]), ARGV[p+2], tonumber(ARGV[p+3]), tonumber(ARGV[p+4])
      local ngr = tonumber(ARGV[p+5])
      local rp = p + 6
      local ndl = tonumber(ARGV[rp + 4*ngr])
      local dp = rp + 4*ngr + 1
      p = dp + 3*ndl
      local res = 0
      -- wrote[g] lists the offsets group g wrote field by field, and
      -- before[b] the runs of bucket b before this op added one (for a
      -- rollback)
      local wrote, before = {}, {}
      if ik > 0 then
        local cur = redis.call('GET', KEYS[ik])
        if cur and cur ~= iv and #cur >= 8 and expiry(cur) > now then
          res = cur
          if durable then redis.call('SET', KEYS[ik], cur, 'KEEPTTL', 'XX') end
        end
      end
      if res == 0 then
        -- A group of free fields is one run. Otherwise each field is
        -- written on its own; a field already held is ours (a resend: same
        -- value) or a collision, which undoes what this op wrote (nobody
        -- saw it: the script is atomic).
        local i = 0
        for g = 0, ngr - 1 do
          local q = rp + 4*g
          local b, lo, n, v = tonumber(ARGV[q]), tonumber(ARGV[q+1]), tonumber(ARGV[q+2]), ARGV[q+3]
          local w = {}
          wrote[g] = w
          if n > 1 and #v < 65536 and allfree(b, lo, n) then
            if before[b] == nil then
              runs(b)
              before[b] = rraw[b]
            end
            addrun(b, lo, n, v)
            written(b, lo, lo + n - 1)
            i = i + n
          else
            touch(b)
            for o = lo, lo + n - 1 do
              i = i + 1
              local r = setnx(b, name(o), o, v)
              if r == -1 then
                res = i
                break
              elseif r == 1 then
                addrange(w, o, o)
                written(b, o, o)
              end
            end
          end
          if res ~= 0 then
            for h = 0, g do
              local u = KEYS[tonumber(ARGV[rp + 4*h])]
              for _, r in ipairs(wrote[h]) do
                for o = r[1], r[2] do redis.call('HDEL', u, names[o]) end
              end
            end
            for ub, s in pairs(before) do putruns(ub, s) end
            break
          end
        end
      end
      if res ~= 0 then
        -- nothing of it is written: its fields keep the bytes they have
        -- (a bucket a rollback emptied has no map to keep: Redis removed
        -- the bucket, and its map is removed with it below)
        for g = 0, ngr - 1 do
          local q = rp + 4*g
          local b, lo = tonumber(ARGV[q]), tonumber(ARGV[q+1])
          for o = lo, lo + tonumber(ARGV[q+2]) - 1 do skipped(b, o) end
        end
      else
        for g = 0, ngr - 1 do keepOnce(tonumber(ARGV[rp + 4*g])) end
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
        local key, o = KEYS[b], tonumber(f)
        touch(b)
        local cur = held(b, f, o)
        if new ~= '' and cur == new then
          res = 0
        elseif (old == '' and cur) or (old ~= '' and cur ~= old) then
          res = -1
        elseif new == '' then
          redis.call('HDEL', key, f)
          unrun(b, o)
          setmap(b, o, string.char(0))
          cwritten(b, f)
          bttl[b] = nil -- the delete may have emptied the bucket
        else
          redis.call('HSET', key, f, new)
          dropcovered(b, o)
          written(b, o, o)
          setmap(b, o, string.char(st))
          cwritten(b, f)
          keep(b, ttl)
        end
      end
      if res == 0 and zk > 0 then redis.call('ZREM', KEYS[zk], m) end
      out[#out+1] = res
    elseif kind == 'M' then
      mark(tonumber(ARGV[p+1]), tonumber(ARGV[p+2]), tonumber(ARGV[p+3]))
      p = p + 4
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
if not ok then recoverMarks() end
finishMaps()
if not ok then
  if type(res) == 'table' and res.err then return res end
  return redis.error_reply('ERR idgen batch: ' .. tostring(res))
end
if res then return res end
return out
`

var batchScript = redis.NewScript(batchSource)
