-- Settles what a call reserved: palisade-limits/src/redis.rs sends it once
-- the call has ended (or never ran). Times in microseconds, as check.lua.
--
-- ARGV[1] is now. Then five fields per adjustment, for KEYS[i]:
--   rate   "r", emission, -, -, -          (the call never ran: refund it)
--   count  "c", reserved, actual, expires, -
--   money  "m", reserved, actual, expires, reservation

local now = tonumber(ARGV[1])
local WINDOW_SLACK_MS = 3600000 -- as check.lua

-- Lua writes numbers past 14 digits in exponent form: every number sent
-- back to Redis goes through here.
local function int(x)
  return string.format('%.0f', x)
end

for i, key in ipairs(KEYS) do
  local at = 1 + (i - 1) * 5
  local kind = ARGV[at + 1]
  local a, b, c = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  if kind == 'r' then
    local tat = redis.call('HGET', key, 't')
    if tat then
      redis.call('HSET', key, 't', int(math.max(tonumber(tat) - a, 0)))
    end
  elseif kind == 'c' then
    local reserved, actual, expires = a, b, c
    local used = tonumber(redis.call('GET', key) or '0')
    redis.call('SET', key, int(math.max(used - reserved, 0) + actual))
    redis.call('PEXPIREAT', key, int(math.ceil(expires / 1000) + WINDOW_SLACK_MS))
  elseif kind == 'm' then
    local reserved, actual, expires = a, b, c
    local field = 'h:' .. ARGV[at + 5]
    local held = redis.call('HGET', key, field)
    local hold = 0
    if held then
      local sep = string.find(held, ':', 1, true)
      hold = tonumber(string.sub(held, sep + 1))
    end
    if held and hold > now then
      redis.call('HDEL', key, field)
      redis.call('HINCRBY', key, 's', int(actual))
    else
      -- Held past its time: charged in full, if not already.
      if held then
        redis.call('HDEL', key, field)
        redis.call('HINCRBY', key, 's', int(reserved))
      end
      if actual > reserved then
        redis.call('HINCRBY', key, 's', int(actual - reserved))
      end
    end
    local ttl = redis.call('PTTL', key)
    local until_ms = math.ceil(expires / 1000) + WINDOW_SLACK_MS
    if ttl < 0 or now / 1000 + ttl < until_ms then
      redis.call('PEXPIREAT', key, int(until_ms))
    end
  else
    return redis.error_reply('palisade: unknown adjustment kind ' .. tostring(kind))
  end
end
return 1
