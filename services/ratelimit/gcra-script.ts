/**
 * GCRA (the generic cell rate algorithm, a token bucket without a refill timer) over several
 * buckets at once, atomic in Redis: the request is allowed only when every bucket allows it, and
 * only then is every bucket charged. Redis' own clock (TIME) is the clock, so every instance that
 * shares the Redis shares the buckets exactly.
 *
 * A bucket stores its theoretical arrival time (TAT, ms). With interval = 1000 / rps and
 * tolerance = burst * interval, a request is allowed when TAT + interval - tolerance <= now.
 *
 * KEYS: one per bucket. ARGV[1]: cost; then per bucket: interval (ms), burst.
 * Returns {allowed (0|1), then per bucket: retry-after ms, remaining, ms until full}.
 */
export const GCRA_SCRIPT = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local cost = tonumber(ARGV[1])
local allowed = 1
local tats = {}
local retries = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local allowAt = tat + interval * cost - burst * interval
  if allowAt > now then
    allowed = 0
    retries[i] = allowAt - now
  else
    retries[i] = 0
  end
  tats[i] = tat
end
local out = { allowed }
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + interval * cost
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
  end
  out[#out + 1] = math.ceil(retries[i])
  out[#out + 1] = math.max(0, math.floor((now + burst * interval - tat) / interval))
  out[#out + 1] = math.ceil(tat - now)
end
return out
`;
