-- steadfast-ratelimit: a waiter that left hands its slot back, if no one
-- booked after it (else the slot is lost: never given twice).
-- KEYS[1]: the arrival time; ARGV: the arrival time it left, its cost.
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat and tat == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], string.format('%d', tat - tonumber(ARGV[2])), 'KEEPTTL')
  return 1
end
return 0
