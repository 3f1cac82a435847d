-- due.lua: compare-and-set of one account's entry in the sweeper's index (limits/sweeper.h).
--   KEYS[1] as:due  ZSET  account id scored by the earliest expiry (ms) of its pending holds
--   ARGV[1] account id, ARGV[2] the score the sweeper read, ARGV[3] the account's next expiry
--           after its sweep (ms), or 0 when no pending hold is left.
-- Sets the entry to ARGV[3] (removes it for 0) only if it still has the score the sweeper
-- read: a switch that placed an earlier-expiring hold meanwhile lowered it (ZADD LT), and
-- that newer score must stay. Replies 1 when it changed the entry, 0 when it left it.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
