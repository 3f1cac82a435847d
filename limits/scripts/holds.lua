-- holds.lua: every stateful step of one message on one account, atomically, in one FCALL.
--
-- All keys belong to one account and carry its hash tag, so the script runs unchanged on
-- Redis Cluster:
--   KEYS[1] account  HASH  as:{a:<id>}           cur bal held st od
--   KEYS[2] card     HASH  as:{a:<id>}:c:<token> st exp day dA.<ch> dN.<ch> mon mA.<ch> mN.<ch>
--   KEYS[3] holds    HASH  as:{a:<id>}:h         <hold id> -> packed hold record
--   KEYS[4] expiry   ZSET  as:{a:<id>}:hx        <hold id> scored by expiry (ms), pending only
--   KEYS[5] replay   STRING as:{a:<id>}:i:<txn>  fingerprint "\n" reply, expires after a window
-- ARGV[1] operation, ARGV[2] now (ms), ARGV[3] replay window (ms), ARGV[4] request fingerprint,
-- then the operation's arguments (see each function). Operations: auth, incr, debit, refund,
-- adjust, capture, reverse, balance, sweep, and force_auth / force_debit: auth / debit of a
-- transaction the switch already approved by stand-in, replayed by its reconciler
-- (switch/reconciler.h), placed whatever the balance and limits say (see forced_transaction).
--
-- Reply, always: { rc, approved, balance, available, reason, value, threshold, fired }
--   rc         ISO 8583 response code ("00", "10", "51", ...)
--   approved   amount approved or posted, minor units
--   balance    ledger balance after the operation, minor units
--   available  balance + overdraft - pending holds, after the operation
--   reason     "" or which rule decided (e.g. "day_amount"), with its value and threshold
--   fired      the velocity rules that fired, "rule:value:threshold[:s];..." (s: shadow), 1-based
--              in the order the switch passed them; "" without velocity arguments
-- Money is integer minor units throughout; Lua numbers are doubles, exact below 2^53.

-- A Redis function library: limits/holds_script.cc makes the library around this file (its
-- name carries the file's hash) and registers holds_call, below, as its function. Functions
-- are defined once, when the library is loaded, not on every call as an EVAL script's are
-- (that cost about 6 us of Redis CPU per call). The state of one call lives in the locals
-- below; holds_call sets every one of them before anything else runs.
local acct, card, holds, expiry, replay  -- KEYS[1..5]
local op, now, replay_ms, fingerprint     -- ARGV[1..4]

-- Hold record: state|amount|posted|currency|mcc|expires|channel|day|month|created|velocity
-- (velocity: the velocity buckets the transaction was counted in, "scope,cid,bucket;...", so a
-- reversal can undo them once; empty without velocity rules)
-- state: P pending (amount held),
--        C posted: a captured hold, or a single-message debit (amount = what the limits
--          counted, posted = debited); a full reversal gives that usage back,
--        R refund credit (amount 0, posted = credited),
--        A manual adjustment (amount 0, posted = signed amount credited),
--        V voided (reversed in full), X expired.
-- A reversal reduces `posted` of C (credit back) and R (take the credit back); 0 left is V.
local function unpack_hold(s)
  local f = {}
  for part in string.gmatch(s, '([^|]*)|?') do
    f[#f + 1] = part
    if #f == 11 then break end
  end
  return { st = f[1], amt = tonumber(f[2]), posted = tonumber(f[3]), cur = f[4], mcc = f[5],
           exp = tonumber(f[6]), ch = f[7], day = f[8], mon = f[9], created = f[10],
           vel = f[11] or '' }
end

local function pack_hold(h)
  return table.concat({ h.st, h.amt, h.posted, h.cur, h.mcc, h.exp, h.ch, h.day, h.mon,
                        h.created, h.vel or '' }, '|')
end

-- The account and card fields, each read with one HMGET on first use (with the velocity
-- fields the call needs) and kept current here; what changes is written back with one HSET per
-- hash at the end of the call (flush_writes). Each redis.call costs Redis CPU (bench/RESULTS.md,
-- "The holds script's cost"), so one call makes as few as it can. The call is atomic, so a
-- value read at the start and written at the end is what an increment in place would leave.
local V  -- auth and debit: the velocity arguments (velocity_args), parsed before anything is read
local acct_set, card_set  -- field -> value, written by flush_writes

-- The account's 'nx': a lower bound of the earliest expiry in its expiry ZSET (ms), so that
-- most calls skip looking for due holds; absent means unknown (look). kNever: nothing pending.
local kNever = 9007199254740991

local A
local function account()
  if not A then
    local r = redis.call('HMGET', acct, 'cur', 'st', 'bal', 'held', 'od', 'nx',
                         unpack(V and V.acct_fields or {}))
    A = { cur = r[1], st = r[2], bal = tonumber(r[3] or 0), held = tonumber(r[4] or 0),
          od = tonumber(r[5] or 0), nx = tonumber(r[6]), vel = r }
  end
  return A
end

-- Adds delta to the account's 'bal' or 'held'.
local function acct_add(field, delta)
  local a = account()
  a[field] = a[field] + delta
  acct_set[field] = a[field]
end

-- Lowers the account's next-expiry bound to `exp` (a hold just placed) when it is known.
local function acct_expiry(exp)
  local a = account()
  if a.nx and exp < a.nx then
    a.nx = exp
    acct_set.nx = exp
  end
end

local function hset_all(key, set)
  local args = {}
  for f, v in pairs(set) do
    args[#args + 1], args[#args + 2] = f, v
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

local function flush_writes()
  hset_all(card, card_set)
  hset_all(acct, acct_set)
end

local function balances()
  local a = account()
  return a.bal, a.bal + a.od - a.held
end

-- Card state and its usage counters of one channel (every operation of one call uses one).
local C
local function card_state(ch)
  if not C then
    local r = redis.call('HMGET', card, 'st', 'exp', 'day', 'mon', 'dA.' .. ch, 'dN.' .. ch,
                         'mA.' .. ch, 'mN.' .. ch, unpack(V and V.card_fields or {}))
    C = { st = r[1], exp = r[2], day = r[3], mon = r[4], ch = ch, dA = tonumber(r[5] or 0),
          dN = tonumber(r[6] or 0), mA = tonumber(r[7] or 0), mN = tonumber(r[8] or 0),
          vel = r }
  elseif C.ch ~= ch then
    error('holds.lua: one call reads one channel (' .. C.ch .. ', then ' .. ch .. ')')
  end
  return C
end

-- The velocity rules that fired in this call ("rule:value:threshold[:s];..."), or "".
local fired

local function reply(rc, approved, reason, value, threshold)
  local bal, avail = balances()
  return { rc, approved, bal, avail, reason or '', value or 0, threshold or 0, fired }
end

local function decline(rc, reason, value, threshold)
  return reply(rc, 0, reason, value, threshold)
end

-- Usage counters of a card for the current day and month, reset when the period changed.
local function usage(ch, day, mon)
  local c = card_state(ch)
  local r = { dA = 0, dN = 0, mA = 0, mN = 0 }
  if c.day == day then r.dA, r.dN = c.dA, c.dN end
  if c.mon == mon then r.mA, r.mN = c.mA, c.mN end
  return r
end

-- Counts `amount` and `count` in the day and month the hold `h` belongs to.
-- A new transaction in a new period first clears every channel's counters of that period;
-- undoing (negative amounts) only touches the period the hold was counted in.
local function add_usage(h, amount, count)
  local c = card_state(h.ch)
  local ch = h.ch
  local set = card_set
  -- (A card without a day or month has no counters of it to clear: they are written with it.)
  if c.day ~= h.day and count > 0 then
    if c.day then
      redis.call('HDEL', card, 'dA.pos', 'dN.pos', 'dA.cnp', 'dN.cnp', 'dA.atm', 'dN.atm')
    end
    c.day, c.dA, c.dN = h.day, 0, 0
    set.day = h.day
  end
  if c.mon ~= h.mon and count > 0 then
    if c.mon then
      redis.call('HDEL', card, 'mA.pos', 'mN.pos', 'mA.cnp', 'mN.cnp', 'mA.atm', 'mN.atm')
    end
    c.mon, c.mA, c.mN = h.mon, 0, 0
    set.mon = h.mon
  end
  if c.day == h.day then
    c.dA, c.dN = c.dA + amount, c.dN + count
    set['dA.' .. ch], set['dN.' .. ch] = c.dA, c.dN
  end
  if c.mon == h.mon then
    c.mA, c.mN = c.mA + amount, c.mN + count
    set['mA.' .. ch], set['mN.' .. ch] = c.mA, c.mN
  end
end

-- A pending hold past its expiry: its amount returns.
local function expire_hold(id, h)
  acct_add('held', -h.amt)
  h.st = 'X'
  redis.call('HSET', holds, id, pack_hold(h))
  redis.call('ZREM', expiry, id)
end

-- Pending holds past their expiry return their amount. Bounded per call; the sweep does the
-- rest for accounts nobody touches. Looks only when the account's next-expiry bound has passed
-- (or is unknown), and then renews the bound.
local function expire_due(limit)
  local a = account()
  if not a.cur or (a.nx and now < a.nx) then return 0 end
  local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local s = redis.call('HGET', holds, id)
    if s and string.sub(s, 1, 1) == 'P' then
      expire_hold(id, unpack_hold(s))
    else
      redis.call('ZREM', expiry, id)
    end
  end
  if #due < limit then  -- every due hold is gone: the bound is the first one left
    local first = redis.call('ZRANGE', expiry, 0, 0, 'WITHSCORES')
    local nx = tonumber(first[2]) or kNever
    if nx ~= a.nx then
      a.nx = nx
      acct_set.nx = nx
    end
  end
  return #due
end

local card_rc = { blocked = '62', closed = '62', inactive = '62', lost = '41', stolen = '43' }

-- Card and account checks of a message that takes money (auth, incr, debit): nil when they
-- pass, else the decline. `cur` nil skips the currency check (an increment keeps its hold's).
local function check_card(cur, presented, yymm, amount, ch)
  local ac = account()
  if not ac.cur then return decline('14', 'no_account') end
  local cd = card_state(ch)
  if not cd.st then return decline('14', 'no_card') end
  if cd.st ~= 'active' then return decline(card_rc[cd.st] or '62', 'card_' .. cd.st) end
  if ac.st ~= 'active' then return decline('62', 'account_' .. ac.st) end
  if cd.exp < yymm then return decline('54', 'expired') end
  if presented ~= '' and presented ~= cd.exp then return decline('54', 'expiry_mismatch') end
  if cur and cur ~= ac.cur then return decline('57', 'currency') end
  if amount == nil or amount <= 0 then return decline('13', 'amount') end
  return nil
end

-- The limit arguments auth, incr and debit share, from a[i] on: today(YYYYMMDD) month(YYYYMM)
-- current_yymm partial_ok(0/1) hold_ttl_ms per_txn_max day_amount_max day_count_max
-- month_amount_max month_count_max.
local function limit_args(a, i)
  return { day = a[i], mon = a[i + 1], yymm = a[i + 2], partial_ok = a[i + 3] == '1',
           ttl = tonumber(a[i + 4]), per_txn = tonumber(a[i + 5]), day_amt = tonumber(a[i + 6]),
           day_cnt = tonumber(a[i + 7]), mon_amt = tonumber(a[i + 8]),
           mon_cnt = tonumber(a[i + 9]) }
end

-- Per-transaction, period and available checks of `amount` against usage `u`. `total` is the
-- transaction's amount with this one (an increment: the hold's new amount); `count` is 1 for a
-- new transaction, 0 for an increment. Returns the decline, or nil, the approved amount, the
-- response code ("00", or "10" for a partial approval) and the available amount it saw.
local function check_limits(l, u, amount, total, count)
  if total > l.per_txn then return decline('61', 'per_transaction', total, l.per_txn) end
  if count > 0 then
    if u.dN + count > l.day_cnt then
      return decline('65', 'day_count', u.dN + count, l.day_cnt)
    end
    if u.mN + count > l.mon_cnt then
      return decline('65', 'month_count', u.mN + count, l.mon_cnt)
    end
  end
  if u.dA + amount > l.day_amt then
    return decline('61', 'day_amount', u.dA + amount, l.day_amt)
  end
  if u.mA + amount > l.mon_amt then
    return decline('61', 'month_amount', u.mA + amount, l.mon_amt)
  end
  local _, avail = balances()
  if amount <= avail then return nil, amount, '00', avail end
  if l.partial_ok and avail > 0 then return nil, avail, '10', avail end
  return decline('51', 'available', amount, avail)
end

local function approve(rc, approved, amount, avail)
  if rc == '10' then return reply(rc, approved, 'partial', amount, avail) end
  return reply(rc, approved)
end

-- Fraud rules in the same call (issue 4). auth and debit may carry, after their 20 arguments:
--   a[21] pre_rc         "" or the response code the switch's stateless rules declined with
--   a[22] pre_score      the stateless rules' score
--   a[23] country        merchant country (DE 43), or ""
--   a[24] definitions    which of the library's velocity definitions apply (1-based: the
--                        network's response-code policy)
--   a[25] matches        one character per counter: 1 when this transaction passes its filter
-- The definitions are built into the library, not sent with each call (they were about half of
-- a call's bytes, and Redis reads at most 16 KB from a connection per event-loop pass, which
-- with appendfsync always is one fsync): limits/holds_script.cc (make_holds_library) appends
-- define_velocity{ d1, d2, ... }, each a list of values:
--   decline_score (scores at or above it decline; 0: never), score_rc (the response code of a
--   score decline), K, then K counters of 4: cid scope(c card | a account) counts(a approvals |
--   d declines | * both) window_ms,
--   then R, then R rules of 8: kind ref measure threshold action code score shadow
--         kind w (window counter ref, measure n count | a amount: fires when a matching
--         transaction takes the counter, itself included, above threshold), cd (consecutive
--         declines before this one >= threshold), fc (first use of the merchant country by a
--         card with history), fm (first use of the MCC), cc (merchant country differs from the
--         card's last one, used less than threshold ms ago); action d decline (with code), s
--         score, r review (reported only); shadow 1: reported, changes nothing.
-- Counters keep 12 buckets of window/12 in card field or account field "v.<cid>" (bounded
-- memory: only buckets inside the window are written back). The card also keeps cd
-- (consecutive declines), sc and sm (countries and MCCs seen, at most 32 each), lc and lt (last
-- country and when). A transaction is counted once; its record remembers the buckets, so a
-- full reversal takes back its count and amount, a partial one the amount released.
local kBuckets = 12
local kSeenMax = 32

local function ring_parse(s)
  local r = {}
  if s then
    for b, n, m in string.gmatch(s, '(%d+),(%-?%d+),(%-?%d+)') do
      r[#r + 1] = { tonumber(b), tonumber(n), tonumber(m) }
    end
  end
  return r
end

local function ring_sum(r, first)
  local n, m = 0, 0
  for _, e in ipairs(r) do
    if e[1] >= first then n, m = n + e[2], m + e[3] end
  end
  return n, m
end

local function ring_text(r, first)
  local parts = {}
  for _, e in ipairs(r) do
    if e[1] >= first and (e[2] ~= 0 or e[3] ~= 0) then
      parts[#parts + 1] = e[1] .. ',' .. e[2] .. ',' .. e[3]
    end
  end
  return table.concat(parts, ',')
end

local function list_has(list, item)
  return string.find(',' .. list .. ',', ',' .. item .. ',', 1, true) ~= nil
end

local function list_add(list, item)
  if item == '' or list_has(list, item) then return list end
  local items = {}
  for x in string.gmatch(list, '[^,]+') do items[#items + 1] = x end
  items[#items + 1] = item
  while #items > kSeenMax do table.remove(items, 1) end
  return table.concat(items, ',')
end

-- The library's velocity definitions: define_velocity keeps them as written (while a library
-- loads, Redis offers no Lua library functions, not even tonumber), and each is parsed on its
-- first use, then kept parsed.
local written, definitions = {}, {}

local function define_velocity(list)
  written = list
end

local function definition(p)
  local d = definitions[p]
  local a = written[p]
  if not d and a then
    d = { decline_score = tonumber(a[1]), score_rc = a[2], counters = {}, rules = {}, kinds = {} }
    -- The fields account() and card_state() read with theirs: the card's history, then each
    -- counter's ring in its hash.
    d.card_fields, d.acct_fields = { 'cd', 'sc', 'sm', 'lc', 'lt' }, {}
    local i = 3
    for c = 1, tonumber(a[i]) do
      d.counters[c] = { cid = a[i + 1], scope = a[i + 2], counts = a[i + 3],
                        width = math.max(1, math.ceil(tonumber(a[i + 4]) / kBuckets)) }
      local f = a[i + 2] == 'a' and d.acct_fields or d.card_fields
      f[#f + 1] = 'v.' .. a[i + 1]
      i = i + 4
    end
    i = i + 1
    for r = 1, tonumber(a[i]) do
      d.rules[r] = { kind = a[i + 1], ref = tonumber(a[i + 2]), measure = a[i + 3],
                     threshold = tonumber(a[i + 4]), action = a[i + 5], code = a[i + 6],
                     score = tonumber(a[i + 7]), shadow = a[i + 8] == '1' }
      d.kinds[a[i + 1]] = true
      i = i + 8
    end
    definitions[p] = d
  end
  return d
end

-- A call's velocity state: nil without velocity arguments, false when the library has no such
-- definitions (a switch built for other ones).
local function velocity_args(a)
  if a[24] == nil then return nil end
  local d, matches = definition(tonumber(a[24])), a[25] or ''
  if not d or #matches ~= #d.counters then return false end
  local v = { pre_rc = a[21], pre_score = tonumber(a[22]), country = a[23],
              decline_score = d.decline_score, score_rc = d.score_rc, rules = d.rules,
              kinds = d.kinds, card_fields = d.card_fields, acct_fields = d.acct_fields,
              counters = {} }
  for c, def in ipairs(d.counters) do
    v.counters[c] = { cid = def.cid, scope = def.scope, counts = def.counts,
                      match = string.byte(matches, c) == 49, b = math.floor(now / def.width) }
  end
  return v
end

-- Takes the card's and account's velocity fields out of what card_state() and account() read
-- (after their own 8 and 6 fields). The history fields are kept only while a rule of their
-- kind is in the set (a new rule starts from no history).
local function velocity_load(v, ch)
  local cr, ar = card_state(ch).vel, account().vel
  v.cd, v.sc, v.sm = tonumber(cr[9] or 0), cr[10] or '', cr[11] or ''
  v.lc, v.lt = cr[12] or '', tonumber(cr[13] or 0)
  local ci, ai = 14, 7
  for _, c in ipairs(v.counters) do
    if c.scope == 'a' then
      c.ring, ai = ring_parse(ar[ai]), ai + 1
    else
      c.ring, ci = ring_parse(cr[ci]), ci + 1
    end
  end
end

-- Evaluates the velocity rules for a transaction of `amount` at `mcc`. Returns the decline
-- (rc, reason, value, threshold) or nil; sets `fired`.
local function velocity_rules(v, amount, mcc)
  local list, score, no = {}, v.pre_score, nil
  for j, r in ipairs(v.rules) do
    local value, hit = 0, false
    if r.kind == 'w' then
      local c = v.counters[r.ref]
      local n, m = ring_sum(c.ring, c.b - kBuckets + 1)
      if r.measure == 'a' then value = m + amount else value = n + 1 end
      hit = c.match and value > r.threshold
    elseif r.kind == 'cd' then
      value, hit = v.cd, v.cd >= r.threshold
    elseif r.kind == 'fc' then
      hit = v.country ~= '' and v.sc ~= '' and not list_has(v.sc, v.country)
    elseif r.kind == 'fm' then
      hit = mcc ~= '' and v.sm ~= '' and not list_has(v.sm, mcc)
    elseif r.kind == 'cc' then
      value = now - v.lt
      hit = v.country ~= '' and v.lc ~= '' and v.lc ~= v.country and value < r.threshold
    end
    if hit then
      list[#list + 1] = j .. ':' .. value .. ':' .. r.threshold .. (r.shadow and ':s' or '')
      if not r.shadow then
        if r.action == 'd' and not no then no = { r.code, 'velocity', value, r.threshold } end
        if r.action == 's' then score = score + r.score end
      end
    end
  end
  fired = table.concat(list, ';')
  if v.pre_rc ~= '' then return { v.pre_rc, 'rules', v.pre_score, 0 } end
  if no then return no end
  if v.decline_score > 0 and score >= v.decline_score then
    return { v.score_rc, 'score', score, v.decline_score }
  end
  return nil
end

-- Counts the transaction: declined (amount asked) or approved (amount approved). Returns the
-- undo list for the hold record.
local function velocity_record(v, declined, amount, mcc)
  local undo, cset, aset = {}, card_set, acct_set
  for _, c in ipairs(v.counters) do
    if c.match and c.counts ~= (declined and 'a' or 'd') then
      local ring = c.ring
      local found = false
      for _, e in ipairs(ring) do
        if e[1] == c.b then e[2], e[3], found = e[2] + 1, e[3] + amount, true end
      end
      if not found then ring[#ring + 1] = { c.b, 1, amount } end
      local t = c.scope == 'a' and aset or cset
      t['v.' .. c.cid] = ring_text(ring, c.b - kBuckets + 1)
      if not declined then undo[#undo + 1] = c.scope .. ',' .. c.cid .. ',' .. c.b end
    end
  end
  local k = v.kinds
  if k.cd then
    local cd = declined and v.cd + 1 or 0
    if cd ~= v.cd then cset.cd = cd end
  end
  if not declined then
    local sc, sm = k.fc and list_add(v.sc, v.country) or v.sc, k.fm and list_add(v.sm, mcc) or v.sm
    if sc ~= v.sc then cset.sc = sc end
    if sm ~= v.sm then cset.sm = sm end
    if k.cc and v.country ~= '' then
      cset.lc, cset.lt = v.country, now
    end
  end
  return table.concat(undo, ';')
end

-- Takes a transaction back out of the buckets its record names: `count` (-1 or 0) and
-- `amount` (negative). Buckets already out of their window are gone, and so is their count.
local function velocity_undo(h, count, amount)
  if h.vel == nil or h.vel == '' then return end
  for scope, cid, b in string.gmatch(h.vel, '(%a),([%w_]+),(%d+)') do
    local key, field = scope == 'a' and acct or card, 'v.' .. cid
    local ring = ring_parse(redis.call('HGET', key, field))
    for _, e in ipairs(ring) do
      if e[1] == tonumber(b) then e[2], e[3] = e[2] + count, e[3] + amount end
    end
    redis.call('HSET', key, field, ring_text(ring, 0))
  end
end

local ops = {}

-- Records an approved new transaction `id` of `approved` (state P: held until now + l.ttl; C:
-- debited at once) and counts it in the card's usage (when the card exists). `vel` is its
-- velocity undo list.
local function place(id, state, approved, cur, ch, mcc, l, vel)
  -- amt is what the usage counters counted, so a full reversal can give it back.
  local h = { st = state, amt = approved, posted = 0, cur = cur, mcc = mcc, exp = now,
              ch = ch, day = l.day, mon = l.mon, created = now, vel = vel }
  if state == 'P' then
    h.exp = now + l.ttl
    redis.call('ZADD', expiry, h.exp, id)
    acct_expiry(h.exp)
    acct_add('held', approved)
  else
    h.posted = approved
    acct_add('bal', -approved)
  end
  redis.call('HSET', holds, id, pack_hold(h))
  if card_state(ch).st then add_usage(h, approved, 1) end
end

-- auth: hold_id amount currency channel mcc presented_expiry(YYMM or "") today(YYYYMMDD)
--       month(YYYYMM) current_yymm partial_ok(0/1) hold_ttl_ms per_txn_max day_amount_max
--       day_count_max month_amount_max month_count_max
-- What auth and debit share: the card, account and limit checks of a new transaction, and its
-- record (state P held for auth, C posted for debit). Returns the reply.
local function new_transaction(a, state)
  local id, amount, cur, ch, mcc, presented = a[5], tonumber(a[6]), a[7], a[8], a[9], a[10]
  local l = limit_args(a, 11)
  local v = V
  local no = check_card(cur, presented, l.yymm, amount, ch)
  if no then
    if v and C and C.st then
      velocity_load(v, ch)
      velocity_record(v, true, amount, mcc)
    end
    return no
  end
  if redis.call('HEXISTS', holds, id) == 1 then return decline('94', 'hold_exists') end
  if v then
    velocity_load(v, ch)
    local d = velocity_rules(v, amount, mcc)
    if d then
      velocity_record(v, true, amount, mcc)
      return decline(d[1], d[2], d[3], d[4])
    end
  end
  local approved, rc, avail
  no, approved, rc, avail = check_limits(l, usage(ch, l.day, l.mon), amount, amount, 1)
  if no then
    if v then velocity_record(v, true, amount, mcc) end
    return no
  end
  place(id, state, approved, cur, ch, mcc, l, v and velocity_record(v, false, approved, mcc) or '')
  return approve(rc, approved, amount, avail)
end

-- force_auth / force_debit: auth's (debit's) 16 arguments in auth's order; velocity arguments,
-- if any, are ignored.
-- The switch already answered this transaction 00 by stand-in (Redis did not answer in time),
-- so the money is owed whatever the account says now: the hold (debit) is placed for the full
-- amount even when the card state, expiry, limits or available balance would decline it
-- (available may go below zero), counted in the card's usage like any approval, and replied
-- 00 with reason "stand_in". Refused only when it cannot be placed: no account (14), another
-- currency (57), a bad amount (13), or a hold record with this id already (94 hold_exists: the
-- original call placed it, or a reversal of it came first and left its void record).
-- Replays (see the end of the script): the same key with the same fingerprint returns the
-- original reply when that approved in full (00) and changes nothing; an original decline is
-- superseded: the forced hold is placed and its reply replaces the replay record, so a repeat of
-- the original request is answered 00 like the stand-in answer. An original partial approval
-- (10) is topped up to the full amount (forced_top_up).
local function forced_transaction(a, state)
  local id, amount, cur, ch, mcc = a[5], tonumber(a[6]), a[7], a[8], a[9]
  local l = limit_args(a, 11)
  local ac = account()
  if not ac.cur then return decline('14', 'no_account') end
  if cur ~= ac.cur then return decline('57', 'currency') end
  if amount == nil or amount <= 0 or amount ~= math.floor(amount) then
    return decline('13', 'amount')
  end
  if redis.call('HEXISTS', holds, id) == 1 then return decline('94', 'hold_exists') end
  place(id, state, amount, cur, ch, mcc, l, '')
  return reply('00', amount, 'stand_in')
end

-- force_auth / force_debit whose original call approved part of the amount (10, `original`)
-- while the switch had answered 00 for all of it: the rest is owed too. The original's hold
-- (debit) is raised to the full amount whatever the balance and limits say, counted in the
-- card's usage like an increment, and replied 00 "stand_in" (that reply replaces the replay
-- record). When the original's record is no longer as it placed it, nothing is changed:
--   reversed (V), expired (X) or, for an authorization, completed (C): nothing more is owed
--     (a completion posts the network's final amount); replied 00 "hold_<state>", approved 0;
--   raised or partly reversed since: the original reply (10) is returned, for a person.
local function forced_top_up(a, state, original)
  local id, amount = a[5], tonumber(a[6])
  local s = redis.call('HGET', holds, id)
  if not s then return original end
  local h = unpack_hold(s)
  if h.st ~= state then return reply('00', 0, 'hold_' .. h.st) end
  local placed = state == 'P' and h.amt or h.posted
  if placed ~= original[2] or h.amt ~= original[2] or amount == nil or amount <= placed then
    return original
  end
  local more = amount - placed
  h.amt = amount
  if state == 'P' then
    acct_add('held', more)
  else
    h.posted = amount
    acct_add('bal', -more)
  end
  redis.call('HSET', holds, id, pack_hold(h))
  if card_state(h.ch).st then add_usage(h, more, 0) end
  return reply('00', amount, 'stand_in')
end

function ops.auth(a)
  return new_transaction(a, 'P')
end

-- incr: hold_id additional_amount today month current_yymm partial_ok hold_ttl_ms per_txn_max
--       day_amount_max day_count_max month_amount_max month_count_max
-- Incremental authorization (hotel, fuel top-up) of the pending hold `hold_id`, with the limit
-- arguments of auth in auth's order. Card and account are checked like auth (no currency or
-- expiry is presented: the hold's stand). The increment is no new transaction: the counts are
-- not checked or raised, per_txn_max applies to the hold's new total, and the amount counts in
-- the day and month of the original hold (so its reversal undoes it there; once the card's
-- counters have moved to a later period the increment is checked against and added to nothing
-- there). today and month are unused; they keep the argument tail identical to auth's.
-- Raises the hold and moves its expiry to now + hold_ttl_ms (never earlier). Replies the
-- approved increment. A hold that is missing, not pending or past its expiry: 12.
function ops.incr(a)
  local id, amount = a[5], tonumber(a[6])
  local l = limit_args(a, 7)
  local s = redis.call('HGET', holds, id)
  local h = s and unpack_hold(s)
  -- The card is read for the hold's channel (any channel when there is no usable hold).
  local no = check_card(nil, '', l.yymm, amount, (h and h.ch ~= '') and h.ch or 'pos')
  if no then return no end
  if not h then return decline('12', 'no_pending_hold') end
  if h.st == 'P' and h.exp <= now then expire_hold(id, h) end
  if h.st ~= 'P' then return decline('12', 'no_pending_hold') end
  local approved, rc, avail
  no, approved, rc, avail = check_limits(l, usage(h.ch, h.day, h.mon), amount, h.amt + amount, 0)
  if no then return no end
  h.amt = h.amt + approved
  h.exp = math.max(h.exp, now + l.ttl)
  redis.call('HSET', holds, id, pack_hold(h))
  redis.call('ZADD', expiry, h.exp, id)
  acct_add('held', approved)
  add_usage(h, approved, 0)
  return approve(rc, approved, amount, avail)
end

-- debit: txn_id amount currency channel mcc presented_expiry today month current_yymm
--        partial_ok hold_ttl_ms per_txn_max day_amount_max day_count_max month_amount_max
--        month_count_max
-- Single-message financial transaction (0200: PIN purchase, ATM cash): auth's arguments in
-- auth's order (hold_ttl_ms unused: nothing is held) and auth's checks, but it posts at once:
-- `bal` goes down, `held` is untouched. Counts toward usage like auth. Recorded as a posted
-- record (C, amount = what the limits counted, posted = debited) so that a reversal credits it
-- back.
function ops.debit(a)
  return new_transaction(a, 'C')
end

function ops.force_auth(a)
  return forced_transaction(a, 'P')
end

function ops.force_debit(a)
  return forced_transaction(a, 'C')
end

-- What refund and adjust share: a posting to the balance with no card or limit check, refused
-- on a closed account or in another currency, recorded under the transaction key as `state`
-- with posted = the amount. `valid(amount)` says which amounts the operation takes.
local function post_to_balance(a, state, valid)
  local id, amount, cur = a[5], tonumber(a[6]), a[7]
  local ac = account()
  if not ac.cur then return decline('14', 'no_account') end
  if ac.st == 'closed' then return decline('62', 'account_closed') end
  if cur ~= ac.cur then return decline('57', 'currency') end
  if amount == nil or not valid(amount) then return decline('13', 'amount') end
  if redis.call('HEXISTS', holds, id) == 1 then return decline('94', 'hold_exists') end
  local h = { st = state, amt = 0, posted = amount, cur = cur, mcc = '', exp = now, ch = '',
              day = '', mon = '', created = now }
  redis.call('HSET', holds, id, pack_hold(h))
  acct_add('bal', amount)
  return reply('00', amount)
end

-- refund: txn_id amount currency
-- Credit to the account (processing code 20). Money coming back to the customer: the card is
-- not read (a refund on a blocked, lost, stolen or expired card is accepted) and neither is an
-- account state other than closed (a blocked account still receives credits); a closed
-- account declines 62. Counts toward no limit. Recorded as R with posted = the credit, so that
-- a reversal takes the credit back.
function ops.refund(a)
  return post_to_balance(a, 'R', function(x) return x > 0 end)
end

-- adjust: txn_id amount(signed) currency
-- A manual credit (amount > 0) or debit (amount < 0) by the issuer's operations staff
-- (authswitch-admin account credit/debit): no card, limit or available check (a debit may take
-- the balance below zero), a closed account declines 62. Recorded as A with posted = amount,
-- so a replay of the same key changes nothing; a reversal of it is acknowledged and ignored.
function ops.adjust(a)
  return post_to_balance(a, 'A', function(x) return x ~= 0 and x == math.floor(x) end)
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
      acct_add('held', -h.amt)
      redis.call('ZREM', expiry, id)
    end
  else
    h = { amt = 0, cur = '', mcc = '', exp = now, ch = '', day = '', mon = '', created = now }
  end
  h.st, h.posted = 'C', final
  redis.call('HSET', holds, id, pack_hold(h))
  acct_add('bal', -final)
  return reply('00', final)
end

-- reverse: hold_id remaining_amount. Leaves `remaining` standing (0 = full reversal): reduces
-- or voids a pending hold, credits back what was posted beyond it (captures and debits), or
-- takes back what a refund credited beyond it (even below zero). Always acknowledged.
function ops.reverse(a)
  local id, remaining = a[5], tonumber(a[6])
  if remaining == nil or remaining < 0 then return decline('13', 'amount') end
  local s = redis.call('HGET', holds, id)
  if not s then
    -- Remembered as void (V, nothing held or posted), so an authorization arriving after its
    -- reversal (a late call, a stand-in approval replayed by the reconciler) finds the id taken
    -- and places nothing (94 hold_exists).
    redis.call('HSET', holds, id, pack_hold({ st = 'V', amt = 0, posted = 0, cur = '', mcc = '',
                                              exp = now, ch = '', day = '', mon = '',
                                              created = now }))
    return reply('00', 0, 'no_hold')
  end
  local h = unpack_hold(s)
  if h.st == 'P' then
    if remaining >= h.amt then return reply('00', 0, 'nothing_to_release') end
    local released = h.amt - remaining
    acct_add('held', -released)
    add_usage(h, -released, remaining == 0 and -1 or 0)
    velocity_undo(h, remaining == 0 and -1 or 0, -released)
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
    acct_add('bal', credited)
    h.posted = remaining
    if remaining == 0 then
      h.st = 'V'
      -- The transaction did not happen: give back what it counted (once: V is final). A
      -- completion that had no authorization (ch empty) counted nothing.
      if h.ch ~= '' then add_usage(h, -h.amt, -1) end
      velocity_undo(h, -1, -h.amt)
    end
    redis.call('HSET', holds, id, pack_hold(h))
    return reply('00', credited)
  elseif h.st == 'R' then
    if remaining >= h.posted then return reply('00', 0, 'nothing_to_take_back') end
    local taken = h.posted - remaining
    acct_add('bal', -taken)
    h.posted = remaining
    if remaining == 0 then h.st = 'V' end
    redis.call('HSET', holds, id, pack_hold(h))
    return reply('00', taken)
  end
  return reply('00', 0, 'hold_' .. h.st)
end

-- balance: nothing to change; reports balance and available.
function ops.balance(_)
  return reply('00', 0)
end

-- sweep: limit
-- The periodic expiry sweep of one account (no replay record; the fingerprint is unused) (the sweeper finds accounts through an index of
-- due times that the client keeps; a stale index entry costs one cheap call, a missing one
-- only delays the return of funds until the account is next touched, when the lazy expiry
-- runs first). Expires up to `limit` due holds. Replies value = holds expired, threshold =
-- the next pending hold's expiry (ms), or 0 when none is left.
function ops.sweep(a)
  local n = expire_due(tonumber(a[5]))
  local next_due = redis.call('ZRANGE', expiry, 0, 0, 'WITHSCORES')
  return reply('00', 0, 'swept', n, tonumber(next_due[2] or 0))
end

-- A replay record is "<fingerprint>\n<reply>", the reply's 8 values separated by tabs (none of
-- its texts holds a tab; a JSON array in records written before 2026-12-07).
local function reply_text(r)
  return table.concat(r, '\t')
end

local function reply_parse(s)
  if string.sub(s, 1, 1) == '[' then return cjson.decode(s) end
  local r = {}
  for part in string.gmatch(s, '([^\t]*)\t?') do
    r[#r + 1] = part
    if #r == 8 then break end
  end
  for _, i in ipairs({ 2, 3, 4, 6, 7 }) do r[i] = tonumber(r[i]) end
  return r
end

-- One call (FCALL <function> 5 KEYS... ARGV...).
local function holds_call(keys, args)
  acct, card, holds, expiry, replay = keys[1], keys[2], keys[3], keys[4], keys[5]
  op, now, replay_ms, fingerprint = args[1], tonumber(args[2]), tonumber(args[3]), args[4]
  V, A, C, fired = nil, nil, nil, ''
  acct_set, card_set = {}, {}

  local fn = ops[op]
  if not fn then return redis.error_reply('ERR unknown operation ' .. tostring(op)) end
  -- The sweep is housekeeping, not a transaction: no replay record (KEYS[5] is unused), and it
  -- is its own expiry pass.
  if op == 'sweep' then
    local r = fn(args)
    flush_writes()
    return r
  end
  if op == 'auth' or op == 'debit' then
    V = velocity_args(args)
    if V == false then
      return redis.error_reply('ERR holds.lua: this library has no velocity definitions ' ..
                               tostring(args[24]) .. ' for ' .. #(args[25] or '') .. ' counters')
    end
  end

  -- Replays: the same transaction key and request get the original reply and change nothing;
  -- the same key with a different request is a duplicate (94).
  -- A forced (stand-in) authorization supersedes an original that declined (see
  -- forced_transaction) and tops up one that approved part (forced_top_up).
  local forced = op == 'force_auth' or op == 'force_debit'
  local partial
  local seen = redis.call('GET', replay)
  if seen then
    local sep = string.find(seen, '\n', 1, true)
    if string.sub(seen, 1, sep - 1) ~= fingerprint then return decline('94', 'duplicate_key') end
    local original = reply_parse(string.sub(seen, sep + 1))
    if not forced or original[1] == '00' then return original end
    if original[1] == '10' then partial = original end
  end
  expire_due(16)
  local r
  if partial then
    r = forced_top_up(args, op == 'force_auth' and 'P' or 'C', partial)
  else
    r = fn(args)
  end
  flush_writes()
  -- A forced call that placed nothing (or topped nothing up) leaves the original's record as
  -- it was.
  if not forced or (r[1] == '00' and r[5] == 'stand_in') then
    redis.call('SET', replay, fingerprint .. '\n' .. reply_text(r), 'PX', replay_ms)
  end
  return r
end
