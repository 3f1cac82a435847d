-- holds.lua: every stateful step of one message on one account, atomically, in one EVALSHA.
--
-- All keys belong to one account and carry its hash tag, so the script runs unchanged on
-- Redis Cluster:
--   KEYS[1] account  HASH  as:{a:<id>}           cur bal held st od
--   KEYS[2] card     HASH  as:{a:<id>}:c:<token> st exp day dA.<ch> dN.<ch> mon mA.<ch> mN.<ch>
--   KEYS[3] holds    HASH  as:{a:<id>}:h         <hold id> -> packed hold record
--   KEYS[4] expiry   ZSET  as:{a:<id>}:hx        <hold id> scored by expiry (ms), pending only
--   KEYS[5] replay   STRING as:{a:<id>}:i:<txn>  fingerprint "\n" reply, expires after a window
-- ARGV[1] operation, ARGV[2] now (ms), ARGV[3] replay window (ms), ARGV[4] request fingerprint,
-- then the operation's arguments (see each function).
--
-- Reply, always: { rc, approved, balance, available, reason, value, threshold }
--   rc         ISO 8583 response code ("00", "10", "51", ...)
--   approved   amount approved or posted, minor units
--   balance    ledger balance after the operation, minor units
--   available  balance + overdraft - pending holds, after the operation
--   reason     "" or which rule decided (e.g. "day_amount"), with its value and threshold
-- Money is integer minor units throughout; Lua numbers are doubles, exact below 2^53.

local acct, card, holds, expiry, replay = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local replay_ms = tonumber(ARGV[3])
local fingerprint = ARGV[4]

-- Hold record: state|amount|posted|currency|mcc|expires|channel|day|month|created
-- state: P pending, C posted (captured), V voided, X expired.
local function unpack_hold(s)
  local f = {}
  for part in string.gmatch(s, '([^|]*)|?') do
    f[#f + 1] = part
    if #f == 10 then break end
  end
  return { st = f[1], amt = tonumber(f[2]), posted = tonumber(f[3]), cur = f[4], mcc = f[5],
           exp = tonumber(f[6]), ch = f[7], day = f[8], mon = f[9], created = f[10] }
end

local function pack_hold(h)
  return table.concat({ h.st, h.amt, h.posted, h.cur, h.mcc, h.exp, h.ch, h.day, h.mon,
                        h.created }, '|')
end

local function balances()
  local a = redis.call('HMGET', acct, 'bal', 'held', 'od')
  local bal, held, od = tonumber(a[1] or 0), tonumber(a[2] or 0), tonumber(a[3] or 0)
  return bal, bal + od - held
end

local function reply(rc, approved, reason, value, threshold)
  local bal, avail = balances()
  return { rc, approved, bal, avail, reason or '', value or 0, threshold or 0 }
end

local function decline(rc, reason, value, threshold)
  return reply(rc, 0, reason, value, threshold)
end

-- Usage counters of a card for the current day and month, reset when the period changed.
local function usage(ch, day, mon)
  local u = redis.call('HMGET', card, 'day', 'dA.' .. ch, 'dN.' .. ch, 'mon', 'mA.' .. ch,
                       'mN.' .. ch)
  local r = { dA = 0, dN = 0, mA = 0, mN = 0 }
  if u[1] == day then r.dA, r.dN = tonumber(u[2] or 0), tonumber(u[3] or 0) end
  if u[4] == mon then r.mA, r.mN = tonumber(u[5] or 0), tonumber(u[6] or 0) end
  return r
end

local function add_usage(h, amount, count)
  local u = redis.call('HMGET', card, 'day', 'mon')
  local ch = h.ch
  if u[1] ~= h.day and count > 0 then
    -- A new day: counters of other channels are stale too.
    redis.call('HSET', card, 'day', h.day)
    for _, c in ipairs({ 'pos', 'cnp', 'atm' }) do
      redis.call('HDEL', card, 'dA.' .. c, 'dN.' .. c)
    end
  end
  if u[2] ~= h.mon and count > 0 then
    redis.call('HSET', card, 'mon', h.mon)
    for _, c in ipairs({ 'pos', 'cnp', 'atm' }) do
      redis.call('HDEL', card, 'mA.' .. c, 'mN.' .. c)
    end
  end
  -- Undoing (negative amounts) only touches the period the hold was counted in.
  if count > 0 or u[1] == h.day then
    redis.call('HINCRBY', card, 'dA.' .. ch, amount)
    redis.call('HINCRBY', card, 'dN.' .. ch, count)
  end
  if count > 0 or u[2] == h.mon then
    redis.call('HINCRBY', card, 'mA.' .. ch, amount)
    redis.call('HINCRBY', card, 'mN.' .. ch, count)
  end
end

-- Pending holds past their expiry return their amount. Bounded per call; the sweep does the
-- rest for accounts nobody touches.
local function expire_due(limit)
  local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local s = redis.call('HGET', holds, id)
    if s then
      local h = unpack_hold(s)
      if h.st == 'P' then
        redis.call('HINCRBY', acct, 'held', -h.amt)
        h.st = 'X'
        redis.call('HSET', holds, id, pack_hold(h))
      end
    end
    redis.call('ZREM', expiry, id)
  end
  return #due
end

local ops = {}

-- auth: hold_id amount currency channel mcc presented_expiry(YYMM or "") today(YYYYMMDD)
--       month(YYYYMM) current_yymm partial_ok(0/1) hold_ttl_ms per_txn_max day_amount_max
--       day_count_max month_amount_max month_count_max
function ops.auth(a)
  local id, amount, cur, ch, mcc, presented = a[5], tonumber(a[6]), a[7], a[8], a[9], a[10]
  local day, mon, yymm, partial_ok, ttl = a[11], a[12], a[13], a[14] == '1', tonumber(a[15])
  local per_txn, day_amt, day_cnt = tonumber(a[16]), tonumber(a[17]), tonumber(a[18])
  local mon_amt, mon_cnt = tonumber(a[19]), tonumber(a[20])
  local ac = redis.call('HMGET', acct, 'cur', 'st')
  if not ac[1] then return decline('14', 'no_account') end
  local cd = redis.call('HMGET', card, 'st', 'exp')
  if not cd[1] then return decline('14', 'no_card') end
  local card_rc = { blocked = '62', closed = '62', inactive = '62', lost = '41', stolen = '43' }
  if cd[1] ~= 'active' then return decline(card_rc[cd[1]] or '62', 'card_' .. cd[1]) end
  if ac[2] ~= 'active' then return decline('62', 'account_' .. ac[2]) end
  if cd[2] < yymm then return decline('54', 'expired') end
  if presented ~= '' and presented ~= cd[2] then return decline('54', 'expiry_mismatch') end
  if cur ~= ac[1] then return decline('57', 'currency') end
  if amount == nil or amount <= 0 then return decline('13', 'amount') end
  if redis.call('HEXISTS', holds, id) == 1 then return decline('94', 'hold_exists') end
  if amount > per_txn then return decline('61', 'per_transaction', amount, per_txn) end
  local u = usage(ch, day, mon)
  if u.dN + 1 > day_cnt then return decline('65', 'day_count', u.dN + 1, day_cnt) end
  if u.mN + 1 > mon_cnt then return decline('65', 'month_count', u.mN + 1, mon_cnt) end
  if u.dA + amount > day_amt then return decline('61', 'day_amount', u.dA + amount, day_amt) end
  if u.mA + amount > mon_amt then
    return decline('61', 'month_amount', u.mA + amount, mon_amt)
  end
  local _, avail = balances()
  local approved, rc = amount, '00'
  if amount > avail then
    if partial_ok and avail > 0 then
      approved, rc = avail, '10'
    else
      return decline('51', 'available', amount, avail)
    end
  end
  local h = { st = 'P', amt = approved, posted = 0, cur = cur, mcc = mcc, exp = now + ttl,
              ch = ch, day = day, mon = mon, created = now }
  redis.call('HSET', holds, id, pack_hold(h))
  redis.call('ZADD', expiry, h.exp, id)
  redis.call('HINCRBY', acct, 'held', approved)
  add_usage(h, approved, 1)
  if rc == '10' then return reply(rc, approved, 'partial', amount, avail) end
  return reply(rc, approved)
end

-- capture: hold_id final_amount. A completion is never declined: it posts the final amount
-- (lower or higher than the hold) and releases the hold, whatever the hold's state.
function ops.capture(a)
  local id, final = a[5], tonumber(a[6])
  if final == nil or final < 0 then return decline('13', 'amount') end
  local s = redis.call('HGET', holds, id)
  local h
  if s then
    h = unpack_hold(s)
    if h.st == 'C' then return decline('94', 'already_posted', h.posted, 0) end
    if h.st == 'P' then
      redis.call('HINCRBY', acct, 'held', -h.amt)
      redis.call('ZREM', expiry, id)
    end
  else
    h = { amt = 0, cur = '', mcc = '', exp = now, ch = '', day = '', mon = '', created = now }
  end
  h.st, h.posted = 'C', final
  redis.call('HSET', holds, id, pack_hold(h))
  redis.call('HINCRBY', acct, 'bal', -final)
  return reply('00', final)
end

-- reverse: hold_id remaining_amount. Leaves `remaining` standing (0 = full reversal): reduces
-- or voids a pending hold, or credits back what was posted beyond it. Always acknowledged.
function ops.reverse(a)
  local id, remaining = a[5], tonumber(a[6])
  if remaining == nil or remaining < 0 then return decline('13', 'amount') end
  local s = redis.call('HGET', holds, id)
  if not s then return reply('00', 0, 'no_hold') end
  local h = unpack_hold(s)
  if h.st == 'P' then
    if remaining >= h.amt then return reply('00', 0, 'nothing_to_release') end
    local released = h.amt - remaining
    redis.call('HINCRBY', acct, 'held', -released)
    add_usage(h, -released, remaining == 0 and -1 or 0)
    h.amt = remaining
    if remaining == 0 then
      h.st = 'V'
      redis.call('ZREM', expiry, id)
    end
    redis.call('HSET', holds, id, pack_hold(h))
    return reply('00', released)
  elseif h.st == 'C' then
    if remaining >= h.posted then return reply('00', 0, 'nothing_to_credit') end
    local credited = h.posted - remaining
    redis.call('HINCRBY', acct, 'bal', credited)
    h.posted = remaining
    if remaining == 0 then h.st = 'V' end
    redis.call('HSET', holds, id, pack_hold(h))
    return reply('00', credited)
  end
  return reply('00', 0, 'hold_' .. h.st)
end

-- balance: nothing to change; reports balance and available.
function ops.balance(_)
  return reply('00', 0)
end

local fn = ops[op]
if not fn then return redis.error_reply('ERR unknown operation ' .. tostring(op)) end

-- Replays: the same transaction key and request get the original reply and change nothing;
-- the same key with a different request is a duplicate (94).
local seen = redis.call('GET', replay)
if seen then
  local sep = string.find(seen, '\n', 1, true)
  if string.sub(seen, 1, sep - 1) ~= fingerprint then return decline('94', 'duplicate_key') end
  return cjson.decode(string.sub(seen, sep + 1))
end
expire_due(16)
local r = fn(ARGV)
redis.call('SET', replay, fingerprint .. '\n' .. cjson.encode(r), 'PX', replay_ms)
return r
