-- Shared by every script of the Redis store: it is placed before each script's own text when the
-- scripts are loaded (Redis scripts cannot include one another).
--
-- Money is a pair (d, f): whole dollars and units of 1e-12 dollar (0 <= f < 1e12). Both parts
-- stay integers far below 2^53, so every sum and comparison is exact in Lua's doubles. Stored
-- and passed as decimal text ("12.5", "0.000001"), never as a Lua number.

local call, tonumber, tostring, pairs, ipairs, unpack = redis.call, tonumber, tostring, pairs, ipairs, unpack
local find, sub, rep, format, gsub, gmatch = string.find, string.sub, string.rep, string.format, string.gsub, string.gmatch
local concat, floor, max = table.concat, math.floor, math.max

local SCALE = 1000000000000
local MAX_DOLLARS = 1000000000000000 -- 1e15: the largest sum kept (far below 2^53)

local function money(text)
  if not text or text == '' then return 0, 0 end
  local dot = find(text, '.', 1, true)
  if not dot then return tonumber(text), 0 end
  local frac = sub(text, dot + 1)
  return tonumber(sub(text, 1, dot - 1)), tonumber(frac .. rep('0', 12 - #frac))
end

local function plus(ad, af, bd, bf)
  local d, f = ad + bd, af + bf
  if f >= SCALE then return d + 1, f - SCALE end
  return d, f
end

local function minus(ad, af, bd, bf) -- a - b, never below zero
  local d, f = ad - bd, af - bf
  if f < 0 then d, f = d - 1, f + SCALE end
  if d < 0 then return 0, 0 end
  return d, f
end

local function above(ad, af, bd, bf)
  return ad > bd or (ad == bd and af > bf)
end

local function text(d, f)
  if d >= MAX_DOLLARS then error('BM_TOO_LARGE a sum reached $1e15, the most the Redis store keeps') end
  if f == 0 then return format('%d', d) end
  local frac = gsub(format('%012d', f), '0+$', '')
  return format('%d', d) .. '.' .. frac
end

-- Exact products for alert thresholds: non-negative integers as little-endian base-1e6 limbs.
local function limbs(digits)
  local out, i = {}, #digits
  while i >= 1 do
    local j = max(1, i - 5)
    out[#out + 1] = tonumber(sub(digits, j, i))
    i = j - 1
  end
  while #out > 1 and out[#out] == 0 do out[#out] = nil end
  return out
end

local function times(a, b)
  local r = {}
  for i = 1, #a + #b do r[i] = 0 end
  for i = 1, #a do
    local carry = 0
    for j = 1, #b do
      local t = r[i + j - 1] + a[i] * b[j] + carry
      carry = floor(t / 1000000)
      r[i + j - 1] = t - carry * 1000000
    end
    r[i + #b] = r[i + #b] + carry
  end
  while #r > 1 and r[#r] == 0 do r[#r] = nil end
  return r
end

local function at_least(a, b)
  if #a ~= #b then return #a > #b end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then return a[i] > b[i] end
  end
  return true
end

local function units(d, f)
  return format('%d%012d', d, f)
end

-- Records: a hash per budget, read into a table; changes are collected and written at the end,
-- after every check passed (a script that fails half-way would leave its first writes behind).
-- A deleted budget whose holds are still open keeps only its field h (the sum they hold, as the
-- open holds set stays): it is no budget (no field b), but a budget of that name created again
-- counts them, as the ledger does.

local function load(key)
  local raw = call('HGETALL', key)
  if #raw == 0 then return nil, raw end
  local rec = {}
  for i = 1, #raw, 2 do rec[raw[i]] = raw[i + 1] end
  return rec, raw
end

local function flat(rec)
  if not rec then return {} end
  local out = {}
  for k, v in pairs(rec) do
    out[#out + 1] = k
    out[#out + 1] = v
  end
  return out
end

local function entry(key, rec, raw)
  return {key = key, rec = rec, raw = raw, set = {}, del = {}, dirty = false}
end

-- The record as the reply shows it: as read, then each field changed (a later pair wins), or
-- whole when fields were removed.
local function shown(e)
  if not e then return {} end
  if #e.del > 0 or not e.raw then return flat(e.rec) end
  local out = e.raw
  for f, v in pairs(e.set) do
    out[#out + 1] = f
    out[#out + 1] = v
  end
  return out
end

local function put_field(e, field, value)
  e.rec[field] = value
  e.set[field] = value
  e.dirty = true
end

local function drop_field(e, field)
  e.rec[field] = nil
  e.set[field] = nil
  e.del[#e.del + 1] = field
  e.dirty = true
end

local function flush(e)
  if not e.dirty then return end
  if #e.del > 0 then call('HDEL', e.key, unpack(e.del)) end
  local args = {}
  for f, v in pairs(e.set) do
    args[#args + 1] = f
    args[#args + 1] = v
  end
  if #args > 0 then call('HSET', e.key, unpack(args)) end
  e.dirty = false
end

-- Whether the record is the budget definition a window was computed for (period and anchor).
local function describes(rec, period, anchor)
  if not rec.p then return period == '' end
  if rec.p ~= period then return false end
  local a = (rec.ca and tonumber(rec.ca)) or (rec.lu and tonumber(rec.lu)) or 0
  return a == tonumber(anchor)
end

-- Start the window beginning at `start` if it is later than the current period (never back).
local function advance(e, start)
  local rec = e.rec
  if start == '' or not rec.p then return false end
  if rec.lu and tonumber(rec.lu) >= tonumber(start) then return false end
  put_field(e, 'c', '0')
  for field in pairs(rec) do
    if sub(field, 1, 2) == 'm:' then drop_field(e, field) end
  end
  if rec.f then drop_field(e, 'f') end
  put_field(e, 'lu', start)
  return true
end

local function in_period(rec, start)
  if not rec.p then return start == '' end
  return start ~= '' and rec.lu ~= nil and tonumber(rec.lu) == tonumber(start)
end

-- Whether the record may take a share of one more model: a model new to its breakdown must keep
-- it within `most` models (ledger._spend).
local function room_for(rec, model, most)
  if model == '' or rec['m:' .. model] then return true end
  local count = 0
  for field in pairs(rec) do
    if sub(field, 1, 2) == 'm:' then count = count + 1 end
  end
  return count < most
end

local function spend(e, model, ad, af)
  local d, f = money(e.rec.c)
  put_field(e, 'c', text(plus(d, f, ad, af)))
  if model ~= '' then
    local field = 'm:' .. model
    local md, mf = money(e.rec[field])
    put_field(e, field, text(plus(md, mf, ad, af)))
  end
end

-- Thresholds come as triples in ARGV from `first`: the fraction as text, its digits as an
-- integer, and the power of ten dividing them. Marks and returns the newly crossed ones.
local function crossings(e, name, first, count, alerts)
  if count == 0 then return end
  local rec = e.rec
  local sd, sf = money(rec.c)
  if sd == 0 and sf == 0 then return end
  local fired = {}
  if rec.f then
    for fraction in gmatch(rec.f, '[^,]+') do fired[fraction] = true end
  end
  local spent, budget = nil, nil
  local crossed = {}
  for i = 0, count - 1 do
    local fraction = ARGV[first + 3 * i]
    if not fired[fraction] then
      spent = spent or units(sd, sf)
      budget = budget or limbs(units(money(rec.b)))
      local lhs = limbs(spent .. rep('0', tonumber(ARGV[first + 3 * i + 2])))
      if at_least(lhs, times(budget, limbs(ARGV[first + 3 * i + 1]))) then
        crossed[#crossed + 1] = fraction
      end
    end
  end
  if #crossed == 0 then return end
  local all = rec.f and (rec.f .. ',' .. concat(crossed, ',')) or concat(crossed, ',')
  put_field(e, 'f', all)
  local start = rec.p and (rec.lu or '') or ''
  for _, fraction in ipairs(crossed) do
    alerts[#alerts + 1] = {name, fraction, rec.c, rec.b, start}
  end
end

-- Open holds of a budget: a sorted set of "amount|hold id" scored by expiry, and their sum in
-- the budget's field h, written at once (a hold that left the set must leave the sum too, even if
-- the script then refuses). Holds that expired by `now` leave both here.
local function save_held(e, hd, hf)
  if hd == 0 and hf == 0 then
    if e.rec.h then
      call('HDEL', e.key, 'h')
      e.rec.h = nil
    end
  else
    e.rec.h = text(hd, hf)
    call('HSET', e.key, 'h', e.rec.h)
  end
end

local function holding(e, now)
  local hd, hf = money(e.rec.h)
  local gone = call('ZRANGEBYSCORE', e.zkey, '-inf', now)
  if #gone > 0 then
    for _, member in ipairs(gone) do
      local bar = find(member, '|', 1, true)
      hd, hf = minus(hd, hf, money(sub(member, 1, bar - 1)))
    end
    call('ZREMRANGEBYSCORE', e.zkey, '-inf', now)
    if call('ZCARD', e.zkey) == 0 then hd, hf = 0, 0 end
    save_held(e, hd, hf)
  end
  return hd, hf
end

-- Take a hold out of a budget's open holds (nothing if it already left them); the budget's
-- sum is written with its other changes (flush).
local function unhold(e, zkey, member, ad, af)
  if call('ZREM', zkey, member) == 0 or not e then return end
  local hd, hf = money(e.rec.h)
  hd, hf = minus(hd, hf, ad, af)
  if hd == 0 and hf == 0 then
    if e.rec.h then drop_field(e, 'h') end
  else
    put_field(e, 'h', text(hd, hf))
  end
end

-- BudgetExceeded unless spend + held + amount fits the budget (see ledger._check_fits).
local function refusal(e, hd, hf, ad, af)
  local sd, sf = money(e.rec.c)
  local xd, xf = plus(sd, sf, hd, hf)
  xd, xf = plus(xd, xf, ad, af)
  local bd, bf = money(e.rec.b)
  if above(xd, xf, bd, bf) then
    return {'err', 'exceeded', e.name, text(xd, xf), e.rec.c, text(hd, hf), text(ad, af), e.rec.b}
  end
  return nil
end

-- The levels a change applies to, from ARGV[at] (their count) on, four values each (name,
-- period, anchor, window start), their keys from KEYS[kat] on, two each (budget, open holds).
-- Returns the entries, each advanced to its window, and the names rolled; or nil and an error
-- reply when a budget is missing or is no longer what the levels say (see ledger._verified).
local function verified(at, kat)
  local n = tonumber(ARGV[at])
  local entries, rolled = {}, {}
  for i = 1, n do
    local base = at + 1 + 4 * (i - 1)
    local name = ARGV[base]
    local key = KEYS[kat + 2 * (i - 1)]
    local rec, raw = load(key)
    if not rec or not rec.b then
      if i == 1 then return nil, {'err', 'unknown_user', name} end
      return nil, {'err', 'chain', name}
    end
    local parent = nil
    if i < n then parent = ARGV[base + 4] end
    if rec.pa ~= parent or not describes(rec, ARGV[base + 1], ARGV[base + 2]) then
      return nil, {'err', 'chain', name}
    end
    local e = entry(key, rec, raw)
    e.name = name
    e.zkey = KEYS[kat + 2 * (i - 1) + 1]
    if advance(e, ARGV[base + 3]) then rolled[#rolled + 1] = name end
    entries[i] = e
  end
  return entries, rolled
end

-- Holds: one string per hold, its fields in this order separated by \2 (none of them can hold a
-- control character): user, amount, levels (name and period start of each, separated by \1),
-- expires at, created at, state, model, settled amount ('' for none).
local function read_hold(key)
  local raw = call('GET', key)
  if not raw then return nil end
  local f = {}
  for part in gmatch(raw .. '\2', '([^\2]*)\2') do f[#f + 1] = part end
  local hold = {u = f[1], a = f[2], l = f[3], e = f[4], c = f[5], s = f[6], raw = raw}
  if f[7] ~= '' then hold.m = f[7] end
  if f[8] ~= '' then hold.x = f[8] end
  return hold
end

local function packed(hold)
  return concat({hold.u, hold.a, hold.l, hold.e, hold.c, hold.s, hold.m or '', hold.x or ''}, '\2')
end

local function lost()
  return {'err', 'lost'}
end

-- A successful reply: whether nothing changed, budgets rolled, alerts, the user's record (field,
-- value, ...) and the hold (see read_hold; '' for none).
local function ok(replayed, rolled, alerts, record, hold)
  return {'ok', replayed and 1 or 0, rolled or {}, alerts or {}, record or {}, hold or ''}
end

-- ----------------------------------------------------------------------------------------------

-- Appends a history event to the project's stream (KEYS[#KEYS - 1]; the id it was last given is
-- kept in KEYS[#KEYS]), with the time, retention (ms), cap, tokens and window end(s) at the end of
-- ARGV. Ids follow the callers' clock, never going back, so a time range is an id range.
local function history_event(kind, user, model, cost, amount, hold_id, ws, we)
  local n = #ARGV
  local t, keep, cap, tokens = ARGV[n - 4], tonumber(ARGV[n - 3]), ARGV[n - 2], ARGV[n - 1]
  local ms = max(floor(tonumber(t) * 1000), 0)
  local last = call('GET', KEYS[#KEYS])
  local seq = 0
  if last then
    local dash = find(last, '-', 1, true)
    local last_ms = tonumber(sub(last, 1, dash - 1))
    if ms <= last_ms then ms, seq = last_ms, tonumber(sub(last, dash + 1)) + 1 end
  end
  local id = format('%.0f-%.0f', ms, seq)
  call('XADD', KEYS[#KEYS - 1], 'MAXLEN', '~', cap, id, 't', t, 'k', kind, 'u', user,
    'm', model or '', 'c', cost, 'a', amount or '', 'tk', tokens, 'h', hold_id or '',
    'ws', ws or '', 'we', we or '')
  call('SET', KEYS[#KEYS], id)
  call('XTRIM', KEYS[#KEYS - 1], 'MINID', format('%.0f', max(ms - keep, 0)))
end
