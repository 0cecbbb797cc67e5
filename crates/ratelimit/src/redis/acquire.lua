-- steadfast-ratelimit: GCRA for one shared quota.
-- KEYS[1]: the theoretical arrival time (µs); KEYS[2]: the shared state.
-- ARGV: now (µs, or '' for the server's TIME), permits, interval (µs),
-- burst, max wait (µs, -1 for none), mode, TTL slack (ms).
-- Modes: 'try' (admit now or not at all), 'reserve' (book the slot,
-- however far), 'lease' (book `permits` consecutive slots; the reply's wait
-- is the first one's), 'confirm' (a waiter whose slot came: admitted
-- unless a pause now covers it, in which case it is booked again).
-- Reply: {code, wait, now, interval, pause_until, tat, set_by, pause_cause}; code 1
-- booked or admitted, 0 refused (try: not now; reserve: over the max
-- wait), -1 more than the burst.
local now = micros_now(ARGV[1])
local n = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local max_wait = tonumber(ARGV[5])
local mode = ARGV[6]
local slack = tonumber(ARGV[7])

local state = redis.call('HMGET', KEYS[2], 'adapted', 'pause_until', 'set_by', 'pause_cause')
local adapted = tonumber(state[1])
if adapted and adapted > interval then interval = adapted end
local pause_until = tonumber(state[2]) or 0
local set_by = state[3] or ''
local cause = state[4] or ''
local tolerance = burst * interval

if mode == 'confirm' and pause_until <= now then
  return {1, 0, now, interval, pause_until, 0, set_by, cause}
end

local cost = n * interval
if mode ~= 'lease' and cost > tolerance then
  return {-1, 0, now, interval, pause_until, 0, set_by, cause}
end

local tat = tonumber(redis.call('GET', KEYS[1])) or 0
if pause_until > now then
  -- Nothing before the pause ends; then one at a time, never the burst.
  tat = math.max(tat, pause_until + (burst - 1) * interval)
end
local base = math.max(tat, now)
local next = base + cost
local ready
if mode == 'lease' then ready = base + interval - tolerance else ready = next - tolerance end
local wait = math.max(ready - now, 0)
if mode == 'try' and wait > 0 then
  return {0, wait, now, interval, pause_until, tat, set_by, cause}
end
if max_wait >= 0 and wait > max_wait and mode ~= 'confirm' then
  return {0, wait, now, interval, pause_until, tat, set_by, cause}
end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000) + slack)
return {1, wait, now, interval, pause_until, next, set_by, cause}
