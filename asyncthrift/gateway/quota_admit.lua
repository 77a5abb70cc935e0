-- One admission against a gateway client's quota and spend cap, atomically (see
-- asyncthrift/gateway/quotas.py). Nothing changes unless every dimension and the cap fit.
-- KEYS[1] the client's quota hash (fields r, i, o: units used; t: when they were read),
-- KEYS[2] the client's spend key for the current period.
-- ARGV[1] now in seconds ('' = the server's TIME, so replicas' clocks never matter),
-- ARGV[2] the quota period in seconds, ARGV[3..5] the limits (-1: none),
-- ARGV[6..8] the costs, ARGV[9] the worst case in dollars, ARGV[10] the spend cap (-1: none),
-- ARGV[11] the spend key's ttl in seconds (0: none).
-- Returns {ok, spend_ok, used_r, used_i, used_o, now, spent}: the levels before this
-- request, as strings (a Lua number would come back truncated to an integer).
-- every number goes back as 17 significant digits: the exact double, read back alike
local function num(x) return string.format('%.17g', x) end
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local period = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'r', 'i', 'o', 't')
local stamp = tonumber(h[4]) or now
local elapsed = math.max(0, now - stamp)
local used = {}
local ok = 1
for d = 1, 3 do
  local limit = tonumber(ARGV[2 + d])
  local u = 0
  if limit >= 0 then
    u = math.max(0, (tonumber(h[d]) or 0) - elapsed * limit / period)
    if u + tonumber(ARGV[5 + d]) > limit then ok = 0 end
  end
  used[d] = u
end
local cap = tonumber(ARGV[10])
local spent = 0
local spend_ok = 1
if cap >= 0 then
  spent = tonumber(redis.call('GET', KEYS[2]) or '0')
  if spent + tonumber(ARGV[9]) > cap then spend_ok = 0 end
end
if ok == 1 and spend_ok == 1 then
  redis.call('HSET', KEYS[1], 'r', num(used[1] + tonumber(ARGV[6])),
    'i', num(used[2] + tonumber(ARGV[7])), 'o', num(used[3] + tonumber(ARGV[8])),
    't', num(math.max(now, stamp)))
  redis.call('PEXPIRE', KEYS[1], math.ceil(period * 2000))
  if cap >= 0 then
    redis.call('INCRBYFLOAT', KEYS[2], ARGV[9])
    if tonumber(ARGV[11]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[11]) end
  end
end
return {ok, spend_ok, num(used[1]), num(used[2]), num(used[3]), num(now),
  num(spent)}
