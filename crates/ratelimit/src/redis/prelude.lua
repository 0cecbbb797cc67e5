-- steadfast-ratelimit: shared by every script (prepended to each).
-- The time in microseconds: the caller's (a number) or, given '', the
-- server's TIME.
local function micros_now(arg)
  if arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end
