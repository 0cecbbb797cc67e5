-- steadfast-ratelimit: one worker's news from the server, shared by all.
-- KEYS[1]: the shared state.
-- ARGV: now (µs, or ''), kind ('throttle', 'success', 'neutral'), sent at
-- (µs, -1 unknown), configured interval (µs), slowest interval (µs),
-- pause (µs, -1 none), pause cause, worker, state TTL (ms), adaptive (1/0).
-- Reply: {adapted interval (0: none), pause_until, cut_at, set_by, pause cause}.
local now = micros_now(ARGV[1])
local kind = ARGV[2]
local sent = tonumber(ARGV[3])
local configured = tonumber(ARGV[4])
local slowest = tonumber(ARGV[5])
local pause = tonumber(ARGV[6])
local cause = ARGV[7]
local worker = ARGV[8]
local ttl = tonumber(ARGV[9])
local adaptive = ARGV[10] == '1'

local state = redis.call('HMGET', KEYS[1], 'adapted', 'cut_at', 'raised_at', 'pause_until', 'set_by', 'pause_cause')
local adapted = tonumber(state[1])
local cut_at = tonumber(state[2]) or 0
local raised_at = tonumber(state[3]) or 0
local pause_until = tonumber(state[4]) or 0
local set_by = state[5] or ''
local pause_cause = state[6] or ''
local current = configured
if adapted and adapted > current then current = adapted end

if kind == 'throttle' and adaptive and (sent < 0 or sent >= cut_at) then
  -- A cut of 0.7 for every worker; throttles of requests sent before the
  -- last cut answer the old rate and do not cut again.
  local new = math.min(math.ceil(current / 0.7), slowest)
  if new < current then new = current end
  redis.call('HSET', KEYS[1], 'adapted', new, 'cut_at', now, 'set_by', worker)
  adapted = new
  cut_at = now
  set_by = worker
elseif kind == 'success' and adapted and adaptive then
  -- Shared recovery: 10 % faster after each quiet spell of 1 s or ten
  -- intervals, back to the configured rate.
  local quiet_since = math.max(cut_at, raised_at, pause_until)
  if now - quiet_since >= math.max(1000000, 10 * adapted) then
    local new = math.floor(adapted / 1.1)
    if new <= configured then
      redis.call('HDEL', KEYS[1], 'adapted')
      adapted = nil
    else
      redis.call('HSET', KEYS[1], 'adapted', new)
      adapted = new
    end
    redis.call('HSET', KEYS[1], 'raised_at', now)
  end
end

if pause >= 0 then
  local pause_end = now + pause
  if pause_end > pause_until then
    redis.call('HSET', KEYS[1], 'pause_until', pause_end, 'pause_cause', cause, 'set_by', worker)
    pause_until = pause_end
    set_by = worker
    pause_cause = cause
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {adapted or 0, pause_until, cut_at, set_by, pause_cause}
