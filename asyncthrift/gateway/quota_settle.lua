-- Settle one admission of a gateway client (see asyncthrift/gateway/quotas.py): give back
-- what was reserved but not used, and replace the spend hold by the true cost.
-- KEYS[1] the client's quota hash, KEYS[2] the spend key of the hold's period,
-- KEYS[3] the spend key of the current period.
-- ARGV[1] now ('' = the server's TIME), ARGV[2] the period, ARGV[3..5] the limits (-1: none),
-- ARGV[6..8] the refunds (negative: used more than reserved), ARGV[9] the worst case held,
-- ARGV[10] the actual cost, ARGV[11] 1 if a spend hold was made, ARGV[12] the spend ttl.
-- every number goes back as 17 significant digits: the exact double, read back alike
local function num(x) return string.format('%.17g', x) end
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local period = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'r', 'i', 'o', 't')
if h[4] then
  local stamp = tonumber(h[4])
  local elapsed = math.max(0, now - stamp)
  local used = {}
  for d = 1, 3 do
    local limit = math.max(0, tonumber(ARGV[2 + d]))
    local drained = math.max(0, (tonumber(h[d]) or 0) - elapsed * limit / period)
    used[d] = math.max(0, drained - tonumber(ARGV[5 + d]))
  end
  redis.call('HSET', KEYS[1], 'r', num(used[1]), 'i', num(used[2]),
    'o', num(used[3]), 't', num(math.max(now, stamp)))
  redis.call('PEXPIRE', KEYS[1], math.ceil(period * 2000))
end
if ARGV[11] == '1' then
  redis.call('INCRBYFLOAT', KEYS[2], -tonumber(ARGV[9]))
  redis.call('INCRBYFLOAT', KEYS[3], ARGV[10])
  if tonumber(ARGV[12]) > 0 then
    redis.call('EXPIRE', KEYS[2], ARGV[12])
    redis.call('EXPIRE', KEYS[3], ARGV[12])
  end
end
return num(now)
