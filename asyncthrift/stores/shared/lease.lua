-- One round trip between a process and the shared budget of one (budget, model class).
--
-- KEYS[1]  the bucket (hash: l1 l2 l3 levels, ts, cold, probe, epoch, seq, and h:<id> the
--          leases held), KEYS[2] the processes
--          seen (zset: member -> last call). Both carry the same {hash tag}: one slot.
-- ARGV[1]  process id            ARGV[2]  period (s)        ARGV[3]  reserve-ahead horizon (s)
-- ARGV[4]  probe wait (s)
-- then per dimension d = 1..3 (requests, input tokens, output tokens), at 4 + 7 * (d - 1):
--   +1 capacity ("0": unlimited, the dimension is skipped)
--   +2 need   (all-or-nothing: every dimension's need, or nothing at all)
--   +3 ask    (need plus a slice; shrinks with what is left, see below)
--   +4 give   (refunds: unused reservations; negative = a further charge)
--   +5 clamp  (a header reading: the level is lowered to it, never raised; "" = none)
--   +6 proof  (a cold bucket's first reading: raises it, once; "" = none)
--   +7 debt   (spent while Redis was unreachable: charged unless the bucket is new)
-- then ARGV[26] lease lifetime (s), ARGV[27..29] what the process holds after this call's
-- give and before its grant (its lease and grants not yet paid for), ARGV[30..32] what it
-- held when Redis became unreachable (its fallback started from it; else 0), ARGV[33] the
-- bucket's epoch and ARGV[34] its sequence number as this process last saw them ("" none),
-- ARGV[35] how long a bucket that Redis lost settles before its level is proven (s),
-- ARGV[36] how long the flow record keeps a call (s), ARGV[37..39] per dimension how long
-- before this call the reading that set its clamp may have been taken at the earliest,
-- ARGV[40..42] at the latest (s; "" or missing: the clamp is applied as it is).
-- ARGV[43] this process's backlog (requests waiting in it; "" or absent: 0), kept in its
-- record: the answer sums the live records' backlogs, so each process sizes its slices by
-- its share of all the work waiting (the processes end together); ARGV[44] "1": grant the
-- needs only if the level pays for them now, else refuse (a process whose head waits for a
-- grant reserved behind others' asks whether the level, which their returns may have
-- raised, pays it at once; its grant reserved ahead stays as it was). ARGV[45..47] of
-- each dimension's give, the part that was granted ahead and not yet paid for ("" or
-- absent: none); the rest was in hand.
-- Last, when given: the report of `_foreign.py` ("F1 ...", below).
--
-- Stock paid for and given back while the level is below zero pays the grants reserved
-- ahead sooner: they are claims on the refill in the order they were made, and a give in
-- hand of G pays the first G of them now. The script then publishes on the bucket's
-- channel (KEYS[1] with its last letter "b" made "n") "seq s1 s2 s3 epoch": every grant made
-- before this call's sequence number is paid s_d seconds sooner in dimension d (each
-- process moves its own, `_notices.py`); a part given back that was itself reserved ahead
-- moves nothing (the claims before it stay where they were), and a process that misses a
-- notice only admits later than it could. No call is needed to learn it: a head waiting
-- for a grant reserved ahead admits as soon as the stock is back (the last process of a
-- run waited 2-4 s for grants behind stock the others had given back).
--
-- Leases expire: the bucket records what each process holds (field h:<id>, "r i o until")
-- and gives back to the level what a process holds that has not called for `lifetime`
-- (killed, or cut off): its lease is back within that time. A process whose record is
-- gone (so given back) while it still holds its lease is charged for it again on its next
-- call. A bucket older than a process last saw it (same epoch, lower sequence: Redis came
-- back from a snapshot, its later grants lost) restarts cold: its level is proven anew.
--
-- A clamp is a ceiling read at an instant T in the past (a response's headers, written at
-- some instant of [earliest, latest]), corrected by the caller for its own grants and gives
-- since. The bucket keeps a record of what flowed in and out of the level (field fl: per
-- call, its instant, the process and per dimension what it gave back and what it took, for
-- the last ARGV[36] seconds), and the ceiling is raised by what the *other* processes gave
-- back since the earliest T and lowered by what they took since the latest T: the level
-- at T was at most the ceiling at T, and since then it moved by exactly those flows. So a
-- reading from before another process gave back refunds no longer clamps them away (with
-- several processes and headers written at admission it did: the first bucket was never
-- used), while a level above the server (another consumer, a level that ran ahead) still
-- comes down by what it was above at T.
--
-- Levels refill continuously at capacity / period by Redis TIME (no client clock), up to
-- the capacity. A level may go below zero: a grant may reserve up to `horizon` seconds of
-- future refill, and says how long until it is paid for (`ready`). A missing bucket (first
-- use, expiry after two idle periods, or a Redis restarted empty) starts cold: level 0, and
-- it grants one probe request at a time until a server reading proves a level (`proof`) or
-- a period has passed; a full bucket is never assumed.
--
-- A bucket missing (or older than its snapshot) for a process that saw it before is not
-- new: Redis lost it while processes hold leases from before and admit from their fallback
-- shares. It is cold and *settles* for ARGV[35] seconds: no probe is granted, so no reading
-- proves it, until every process has had time to find Redis back and stop its fallback at
-- the settle instant (each is told how long is left); the first probe goes after it, and its
-- proof is lowered by what the other processes' records say they still hold.
--
-- Returns {status, granted x3, ready, retry, processes seen (within a period), level x3,
-- processes active (asked within twice the horizon), paid x3 (the part of each grant the
-- level pays for now: usable at once, the rest at `ready`), epoch, sequence, settle (seconds
-- until a lost bucket has settled: a process in its fallback keeps it until then, no
-- longer), from x3 (seconds until the refill starts paying for the rest of each dimension's
-- grant, the level it was taken from back at zero; it pays evenly from then to `ready`),
-- backlog (the summed backlogs of the live records, this process's included), and the
-- answer to `_foreign.py`'s report when it gave one ("F1 ...")};
-- numbers as
-- strings
-- (Lua numbers are truncated to integers on the way out). Status: 0 granted (or nothing
-- asked), 1 probe granted (cold), 2 refused (retry after `retry` s), 3 refused (cold).

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local period = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local probe_wait = tonumber(ARGV[4])

local pid = ARGV[1]
local lifetime = tonumber(ARGV[26])
local f = redis.call('HMGET', KEYS[1], 'l1', 'l2', 'l3', 'ts', 'cold', 'probe', 'epoch', 'seq',
  'settle', 'fl')
local flows_text = f[10] or ''
local flow_window = tonumber(ARGV[36] or '') or 10
-- the flow record: {t, pid, in1, in2, in3, out1, out2, out3} per entry, oldest first
local flows = {}
for entry in string.gmatch(flows_text, '[^;]+') do
  local e = {}
  for x in string.gmatch(entry, '%S+') do e[#e + 1] = x end
  local te = tonumber(e[1])
  if te and te >= now - flow_window then
    flows[#flows + 1] = {te, e[2], tonumber(e[3]), tonumber(e[4]), tonumber(e[5]),
      tonumber(e[6]), tonumber(e[7]), tonumber(e[8])}
  end
end
local function record(who, inflow, outflow)
  if inflow[1] ~= 0 or inflow[2] ~= 0 or inflow[3] ~= 0 or outflow[1] ~= 0
      or outflow[2] ~= 0 or outflow[3] ~= 0 then
    flows[#flows + 1] = {now, who, inflow[1], inflow[2], inflow[3], outflow[1], outflow[2],
      outflow[3]}
  end
end
local lost = false
if f[4] and f[7] == ARGV[33] and ARGV[34] ~= '' and tonumber(f[8]) < tonumber(ARGV[34]) then
  -- older than this process saw it: restored from a snapshot; start again, cold
  redis.call('DEL', KEYS[1])
  f = {false, false, false, false, false, false, false, false, false, false}
  flows = {}
  lost = true
end
-- Consumers outside the shared budget (`_foreign.py`): the caller's report comes last in
-- ARGV ("F1 charged x3, estimate x3", "x" for none; absent: nothing learnt). The
-- bucket keeps per process its last report (field fx: "pid t rate x3 reported x3 estimate
-- x3", ";"-separated; gone after `lifetime`) and every process's charges reported (nt). The
-- level refills at the limit's rate less the average of the live records' estimates (a
-- process drops its own when its readings stop: `ForeignFit.stale`) (`pay`); grants
-- reserved ahead are paid at that rate.
local fx_arg = ARGV[#ARGV]
local fx_on = string.sub(fx_arg, 1, 3) == 'F1 '
local fxf = redis.call('HMGET', KEYS[1], 'fx', 'nt')
local fx, fx_order = {}, {}
for entry in string.gmatch(fxf[1] or '', '[^;]+') do
  local w = {}
  for x in string.gmatch(entry, '%S+') do w[#w + 1] = x end
  local te = tonumber(w[2])
  if te and te >= now - lifetime then
    local e = {te}
    for k = 3, 11 do e[#e + 1] = tonumber(w[k]) or false end
    fx[w[1]] = e
    fx_order[#fx_order + 1] = w[1]
  end
end
local function fx_rates()
  local r = {0, 0, 0}
  for d = 1, 3 do
    local sum, n = 0, 0
    for _, q in ipairs(fx_order) do
      local e = fx[q]
      -- (an estimate not reported again for 0.375 of a period is stale: `ForeignFit.stale`)
      if e[7 + d] and e[1] >= now - 0.375 * period then sum, n = sum + e[7 + d], n + 1 end
    end
    local full = tonumber(ARGV[4 + 7 * (d - 1) + 1]) / period
    if n > 0 then r[d] = math.min(math.max(0, sum / n), 0.9 * full) end
  end
  return r
end
local frate = fx_rates()
local function pay(d)
  return tonumber(ARGV[4 + 7 * (d - 1) + 1]) / period - frate[d]
end

local level = {0, 0, 0}
local cold, probe, fresh, epoch, seq
local settle = tonumber(f[9] or '0')
if not f[4] then
  fresh = true
  cold = now + period
  probe = 0
  epoch = tostring(now) .. ':' .. pid
  seq = 0
  if lost or ARGV[33] ~= '' then
    -- this process saw the bucket before: Redis lost it, others may still admit from
    -- their fallback shares; settle before a probe proves the level
    settle = now + tonumber(ARGV[35])
    probe = settle
  end
else
  epoch = f[7] or ''
  seq = tonumber(f[8] or '0')
  fresh = false
  level = {tonumber(f[1]), tonumber(f[2]), tonumber(f[3])}
  cold = tonumber(f[5])
  probe = tonumber(f[6])
  local dt = now - tonumber(f[4])
  if dt < 0 then dt = 0 end
  for d = 1, 3 do
    local cap = tonumber(ARGV[4 + 7 * (d - 1) + 1])
    if cap > 0 then
      level[d] = math.min(cap, level[d] + pay(d) * dt)
    end
  end
end
if cold > 0 and now >= cold then cold = 0 end

-- expired leases: what processes silent for `lifetime` held goes back to the level
local mine = nil
local others = {0, 0, 0}  -- what the other processes' live records say they hold
local backlog = tonumber(ARGV[43] or '') or 0
local backlogs = backlog  -- summed over the live records (this call's own included)
if not fresh then
  local fields = redis.call('HGETALL', KEYS[1])
  for k = 1, #fields, 2 do
    local name = fields[k]
    if string.sub(name, 1, 2) == 'h:' then
      if string.sub(name, 3) == pid then
        mine = fields[k + 1]
      else
        local r = {}
        for x in string.gmatch(fields[k + 1], '%S+') do r[#r + 1] = tonumber(x) end
        if r[4] < now then
          for d = 1, 3 do
            local cap = tonumber(ARGV[4 + 7 * (d - 1) + 1])
            if cap > 0 then level[d] = math.min(cap, level[d] + r[d]) end
          end
          -- its lease is back in the level: a flow in, as a give of that process
          record(string.sub(name, 3), {r[1], r[2], r[3]}, {0, 0, 0})
          redis.call('HDEL', KEYS[1], name)
        else
          for d = 1, 3 do others[d] = others[d] + r[d] end
          backlogs = backlogs + (r[5] or 0)
        end
      end
    end
  end
end

local caps, need, ask = {}, {}, {}
local lent = {0, 0, 0}  -- given back in hand while the level was below zero (published)
local proved = false
local inflow, outflow = {0, 0, 0}, {0, 0, 0}  -- this call's, for the flow record
for d = 1, 3 do
  local b = 4 + 7 * (d - 1)
  local cap = tonumber(ARGV[b + 1])
  caps[d] = cap
  need[d] = tonumber(ARGV[b + 2])
  ask[d] = tonumber(ARGV[b + 3])
  if cap > 0 then
    local give = tonumber(ARGV[b + 4])
    local in_hand = give - math.max(0, tonumber(ARGV[44 + d] or '') or 0)
    if level[d] < 0 and in_hand > 0 then lent[d] = math.min(in_hand, -level[d]) end
    level[d] = math.min(cap, level[d] + give)
    if give > 0 then inflow[d] = give else outflow[d] = -give end
    if not fresh and cold == 0 then
      level[d] = level[d] - tonumber(ARGV[b + 7])
      outflow[d] = outflow[d] + tonumber(ARGV[b + 7])
      if not mine then
        -- no record: what this process holds was given back (its record expired) or was
        -- never recorded (a new process holds nothing): charge it
        local charge = tonumber(ARGV[26 + d]) + tonumber(ARGV[29 + d])
        level[d] = level[d] - charge
        outflow[d] = outflow[d] + charge
      end
    end
    if cold > 0 and ARGV[b + 6] ~= '' and now >= settle then
      -- the reading's level less what the others still hold (their leases from before a
      -- loss, a probe of their own): this process's own holds are out of it already
      level[d] = math.max(level[d], math.min(cap, tonumber(ARGV[b + 6])) - others[d])
      proved = true
    end
    if ARGV[b + 5] ~= '' then
      -- the ceiling at the reading's instant T, moved by the other processes' flows since
      local ceiling = tonumber(ARGV[b + 5])
      local earliest = tonumber(ARGV[36 + d] or '')
      local latest = tonumber(ARGV[39 + d] or '')
      if earliest and latest then
        earliest, latest = now - earliest, now - latest
        for k = 1, #flows do
          local e = flows[k]
          if e[2] ~= pid then
            if e[1] > earliest then ceiling = ceiling + e[2 + d] end
            if e[1] > latest then ceiling = ceiling - e[5 + d] end
          end
        end
      end
      level[d] = math.min(level[d], ceiling)
    end
  end
end
if proved then cold = 0 end

local granted = {0, 0, 0}
local paid = {0, 0, 0}  -- of `granted`, what the level pays for now (the rest at `ready`)
local from = {0, 0, 0}  -- when the refill starts paying for the rest (the level back at 0)
local status, ready, retry = 0, 0, 0
local asking = false
for d = 1, 3 do
  if caps[d] > 0 and ask[d] > 0 then asking = true end
end
if asking and cold > 0 then
  if probe <= now and need[1] > 0 then
    -- cold: one request goes alone, its answer proves the level
    for d = 1, 3 do
      if caps[d] > 0 then
        granted[d] = need[d]
        paid[d] = need[d]
        level[d] = level[d] - need[d]
      end
    end
    probe = now + probe_wait
    status = 1
  else
    status = 3
    retry = math.max(probe - now, 0.001)
  end
elseif asking then
  -- all-or-nothing: the needs must fit within the level plus `horizon` of refill; the part
  -- asked beyond the need shrinks, per dimension, to what is left of it
  -- a need (the head waiting in the process) beyond the horizon is still granted, alone,
  -- up to a second horizon: it waits for its instant in the process instead of asking
  -- again at it (a refusal is a wasted call, and another process may take that instant)
  local ok = true
  -- ARGV[44] "1": the needs only if the level pays them now (nothing reserved ahead)
  local now_only = ARGV[44] == '1'
  for d = 1, 3 do
    if caps[d] > 0 then
      local rate = pay(d)
      local avail = level[d] + rate * 2 * horizon
      if now_only then avail = level[d] end
      if need[d] > avail then
        ok = false
        -- (at most two horizons: the refill's rate may change meanwhile, `pay`; a wait
        -- computed at a low one kept a process out for a whole period)
        retry = math.min(math.max(retry, (need[d] - avail) / rate), 2 * horizon)
      end
    end
  end
  if ok then
    for d = 1, 3 do
      if caps[d] > 0 then
        local avail = level[d] + pay(d) * horizon
        local g = need[d]
        if ask[d] > need[d] then g = math.max(need[d], math.min(ask[d], avail)) end
        granted[d] = g
        -- a grant is paid for when every dimension it takes from is: a dimension it takes
        -- nothing from (however overdrawn by others) does not hold it up
        if g > 0 then
          paid[d] = math.max(0, math.min(g, level[d]))
          from[d] = math.max(0, -level[d]) / pay(d)
          level[d] = level[d] - g
          if level[d] < 0 then
            ready = math.max(ready, -level[d] / pay(d))
          end
        end
      end
    end
  else
    status = 2
  end
end

seq = seq + 1
for d = 1, 3 do outflow[d] = outflow[d] + granted[d] end
record(pid, inflow, outflow)
local kept = {}
for k = 1, #flows do
  local e = flows[k]
  kept[k] = string.format('%.6f %s %.10g %.10g %.10g %.10g %.10g %.10g', e[1], e[2], e[3], e[4],
    e[5], e[6], e[7], e[8])
end
redis.call('HSET', KEYS[1], 'l1', tostring(level[1]), 'l2', tostring(level[2]),
  'l3', tostring(level[3]), 'ts', tostring(now), 'cold', tostring(cold), 'probe', tostring(probe),
  'epoch', epoch, 'seq', tostring(seq), 'settle', tostring(settle), 'fl', table.concat(kept, ';'))
-- the record stays while the process calls, holding nothing or not: a record gone is a
-- lease given back
local holds = {}
for d = 1, 3 do
  holds[d] = math.max(0, tonumber(ARGV[26 + d]) + granted[d])
end
redis.call('HSET', KEYS[1], 'h:' .. pid, string.format('%.17g %.17g %.17g %.17g %.17g',
  holds[1], holds[2], holds[3], now + lifetime, backlog))
if lent[1] > 0 or lent[2] > 0 or lent[3] > 0 then
  local sooner = {0, 0, 0}
  for d = 1, 3 do
    if lent[d] > 0 and pay(d) > 0 then sooner[d] = lent[d] / pay(d) end
  end
  redis.call('PUBLISH', string.sub(KEYS[1], 1, -2) .. 'n', string.format(
    '%d %.17g %.17g %.17g %s', seq, sooner[1], sooner[2], sooner[3], epoch))
end
local ttl = math.ceil(period * 2000)
redis.call('PEXPIRE', KEYS[1], ttl)
-- a process is active while it asks: its score is its last ask; a call asking nothing (an
-- idle lease returned, refunds given back) leaves it seen but no longer active
local window = 2 * horizon
if asking then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
else
  redis.call('ZADD', KEYS[2], now - window - 0.001, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - period)
redis.call('PEXPIRE', KEYS[2], ttl)
local n = redis.call('ZCARD', KEYS[2])
local active = redis.call('ZCOUNT', KEYS[2], now - window, '+inf')

-- this process's report into the record (`_foreign.py`): its rate is what it charged since
-- its last report over the time since (smoothed over `fx_tau` s). Its answer: the others'
-- charges reported, moved by their rates since, each at most by what it held after its
-- last call (no process spends more than its lease); their summed rate and the room left
-- under those holds; the foreign rates in force; whether this process's record is new
local fx_word = nil
if fx_on then
  local fx_tau = 1.0
  local w = {}
  for x in string.gmatch(fx_arg, '%S+') do w[#w + 1] = x end
  local nt = {0, 0, 0}
  local k = 0
  for x in string.gmatch(fxf[2] or '', '%S+') do k = k + 1; nt[k] = tonumber(x) end
  local prev = fx[pid]
  local e = {now, 0, 0, 0, 0, 0, 0}
  if not prev then fx_order[#fx_order + 1] = pid end
  for d = 1, 3 do
    local charged = tonumber(w[1 + d]) or 0
    local full = tonumber(ARGV[4 + 7 * (d - 1) + 1]) / period
    nt[d] = nt[d] + charged
    if prev then
      local rho = (charged + prev[1 + d] * fx_tau) / (math.max(0, now - prev[1]) + fx_tau)
      e[1 + d] = math.min(math.max(rho, 0), full)
      e[4 + d] = prev[4 + d] + charged
    else
      e[4 + d] = charged
    end
    e[7 + d] = tonumber(w[4 + d]) or false
  end
  fx[pid] = e
  local others = {nt[1] - e[5], nt[2] - e[6], nt[3] - e[7]}
  local orate, room = {0, 0, 0}, {0, 0, 0}
  local kept = {}
  for _, q in ipairs(fx_order) do
    local o = fx[q]
    if q ~= pid then
      local h = redis.call('HGET', KEYS[1], 'h:' .. q)
      local held = {0, 0, 0}
      local j = 0
      for x in string.gmatch(h or '', '%S+') do
        j = j + 1
        if j <= 3 then held[j] = tonumber(x) end
      end
      for d = 1, 3 do
        local spent = o[1 + d] * math.max(0, now - o[1])
        if spent < held[d] then
          orate[d] = orate[d] + o[1 + d]
          room[d] = room[d] + held[d] - spent
        else
          spent = held[d]
        end
        others[d] = others[d] + spent
      end
    end
    local est = {}
    for d = 1, 3 do est[d] = o[7 + d] and string.format('%.17g', o[7 + d]) or 'x' end
    kept[#kept + 1] = string.format('%s %.6f %.10g %.10g %.10g %.17g %.17g %.17g %s %s %s', q,
      o[1], o[2], o[3], o[4], o[5], o[6], o[7], est[1], est[2], est[3])
  end
  redis.call('HSET', KEYS[1], 'fx', table.concat(kept, ';'),
    'nt', string.format('%.17g %.17g %.17g', nt[1], nt[2], nt[3]))
  frate = fx_rates()
  fx_word = string.format(
    'F1 %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %d %.17g %.17g %.17g',
    others[1], others[2], others[3], orate[1], orate[2], orate[3], frate[1], frate[2],
    frate[3], prev and 0 or 1, room[1], room[2], room[3])
end

return {tostring(status), tostring(granted[1]), tostring(granted[2]), tostring(granted[3]),
  tostring(ready), tostring(retry), tostring(n),
  tostring(level[1]), tostring(level[2]), tostring(level[3]), tostring(active),
  tostring(paid[1]), tostring(paid[2]), tostring(paid[3]), epoch, tostring(seq),
  tostring(math.max(0, settle - now)), tostring(from[1]), tostring(from[2]), tostring(from[3]),
  tostring(backlogs), fx_word}
