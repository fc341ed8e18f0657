-- One limits check: every draw admitted, or none drawn. palisade-limits/src/redis.rs
-- sends it; the arithmetic is src/gcra.rs's, in microseconds (Lua numbers
-- are doubles: exact to 2^53, which microseconds since 1970 stay under).
--
-- ARGV[1] is now. Then six fields per draw, for KEYS[i]:
--   rate   "r", emission, burst, -, -, -
--   count  "c", limit, amount, expires, -, -
--   money  "m", limit, amount, expires, hold_until, reservation
-- A rate is a hash {t = TAT}; a count a string; money a hash {s = spent,
-- h:ID = "amount:hold_until"} whose holds past their time are charged in full.
-- Keys expire by Redis's own clock, so each outlives its time by a margin
-- for skew between it and the gateways' (a window's key names the window,
-- so a late expiry only keeps memory a while longer).
--
-- Returns {1, before, after, capacity, ...} per draw when admitted, or
-- {0, index (0-based), before, after, capacity, retry_after or -1}.

local now = tonumber(ARGV[1])
local RATE_SLACK_MS = 60000
local WINDOW_SLACK_MS = 3600000

-- Lua writes numbers past 14 digits in exponent form: every number sent
-- back to Redis goes through here.
local function int(x)
  return string.format('%.0f', x)
end
local plan = {}

local function charge_expired(key)
  local fields = redis.call('HGETALL', key)
  local spent = 0
  local reserved = 0
  local charged = 0
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if name == 's' then
      spent = spent + tonumber(value)
    elseif string.sub(name, 1, 2) == 'h:' then
      local sep = string.find(value, ':', 1, true)
      local amount = tonumber(string.sub(value, 1, sep - 1))
      local hold = tonumber(string.sub(value, sep + 1))
      if hold <= now then
        redis.call('HDEL', key, name)
        charged = charged + amount
      else
        reserved = reserved + amount
      end
    end
  end
  if charged > 0 then
    redis.call('HINCRBY', key, 's', int(charged))
  end
  return spent + charged, reserved
end

for i, key in ipairs(KEYS) do
  local at = 1 + (i - 1) * 6
  local kind = ARGV[at + 1]
  local a, b, c = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  if kind == 'r' then
    local emission, burst = a, b
    local tat = tonumber(redis.call('HGET', key, 't') or '0')
    local next = math.max(tat, now) + emission
    local ahead = next - now
    local tolerance = emission * burst
    local before = math.ceil(math.max(tat - now, 0) / emission)
    if ahead > tolerance then
      return {0, i - 1, before, before, burst, ahead - tolerance}
    end
    plan[i] = {next, before, math.ceil(ahead / emission), burst}
  elseif kind == 'c' then
    local limit, amount, expires = a, b, c
    local used = tonumber(redis.call('GET', key) or '0')
    if amount > 0 and (used >= limit or used + amount > limit) then
      return {0, i - 1, used, used, limit, math.max(expires - now, 0)}
    end
    plan[i] = {amount, used, used + amount, limit}
  elseif kind == 'm' then
    local limit, amount, expires = a, b, c
    local spent, reserved = charge_expired(key)
    local before = spent + reserved
    if before >= limit or before + amount > limit then
      return {0, i - 1, before, before, limit, math.max(expires - now, 0)}
    end
    plan[i] = {amount, before, before + amount, limit}
  else
    return redis.error_reply('palisade: unknown draw kind ' .. tostring(kind))
  end
end

local out = {1}
for i, key in ipairs(KEYS) do
  local at = 1 + (i - 1) * 6
  local kind = ARGV[at + 1]
  local step = plan[i]
  if kind == 'r' then
    redis.call('HSET', key, 't', int(step[1]))
    redis.call('PEXPIREAT', key, int(math.floor(step[1] / 1000) + RATE_SLACK_MS))
  elseif kind == 'c' then
    redis.call('INCRBY', key, int(step[1]))
    redis.call('PEXPIREAT', key, int(math.ceil(tonumber(ARGV[at + 4]) / 1000) + WINDOW_SLACK_MS))
  else
    local expires, hold, id = tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5]), ARGV[at + 6]
    redis.call('HSET', key, 'h:' .. id, int(step[1]) .. ':' .. int(hold))
    redis.call('PEXPIREAT', key, int(math.ceil(math.max(expires, hold) / 1000) + WINDOW_SLACK_MS))
  end
  out[#out + 1] = step[2]
  out[#out + 1] = step[3]
  out[#out + 1] = step[4]
end
return out
