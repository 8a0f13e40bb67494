-- Records a hold's actual cost in the periods it was taken in, and frees it (see ledger.settle).
-- KEYS: marker, hold, then per level of the hold: budget, open holds.
-- ARGV: marker, hold id, amount, model ('' none), most models per budget, thresholds (count,
--       then 3 each), the hold's
--       levels (count, then name and period start each), then the hold as the caller knows it
--       (user, amount, expires at, created at, model, state, how long to keep it in ms; user ''
--       when not known): used when Redis no longer keeps it; then the history tail (see charge.lua).
-- Answers with the hold settled, or with no hold when Redis had it as the caller knew it.
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local hold_id, amount, model = ARGV[2], ARGV[3], ARGV[4]
local most = tonumber(ARGV[5])
local thresholds = tonumber(ARGV[6])
local at = 7 + 3 * thresholds
local n = tonumber(ARGV[at])
local parts = {}
for i = 1, 2 * n do parts[i] = ARGV[at + i] end
local levels = concat(parts, '\1')
local k = at + 2 * n + 1
local hold = read_hold(KEYS[2])
local stored = hold ~= nil
if not stored then
  if ARGV[k] == '' then return {'err', 'unknown_hold'} end
  hold = {u = ARGV[k], a = ARGV[k + 1], l = levels, e = ARGV[k + 2], c = ARGV[k + 3], s = ARGV[k + 5]}
  if ARGV[k + 4] ~= '' then hold.m = ARGV[k + 4] end
end
if hold.l ~= levels then return {'err', 'relevel', hold.l} end
-- Whether Redis has the hold as the caller knows it (then the reply need not repeat it).
local as_known = ARGV[k] ~= '' and hold.u == ARGV[k] and hold.a == ARGV[k + 1]
  and hold.e == ARGV[k + 2] and hold.c == ARGV[k + 3] and (hold.m or '') == ARGV[k + 4]
if hold.s == 'settled' then return ok(true, nil, nil, call('HGETALL', KEYS[3]), hold.raw) end
if model == '' then model = hold.m or '' end
local ad, af = money(amount)
local alerts, entries, first = {}, {}, nil
for i = 1, n do
  local name, start = parts[2 * i - 1], parts[2 * i]
  local key = KEYS[1 + 2 * i]
  local rec, raw = load(key)
  if rec then
    local e = entry(key, rec, raw)
    e.name = name
    if rec.b then
      if in_period(rec, start) then
        if not room_for(rec, model, most) then return {'err', 'too_many_models', tostring(most), model} end
        spend(e, model, ad, af)
        crossings(e, name, 7, thresholds, alerts)
      end
      if name == hold.u then first = e end
    end
    entries[i] = e
  end
end
local hd, hf = money(hold.a)
local member = hold.a .. '|' .. hold_id
for i = 1, n do
  unhold(entries[i], KEYS[2 + 2 * i], member, hd, hf)
  if entries[i] then flush(entries[i]) end
end
hold.s, hold.x = 'settled', amount
if model ~= '' then hold.m = model end
local done = packed(hold)
if stored then
  call('SET', KEYS[2], done, 'KEEPTTL')
else
  call('SET', KEYS[2], done, 'PX', ARGV[k + 6])
end
local start = parts[2]
if start == '' then start = nil end
history_event('settle', hold.u, model, amount, nil, hold_id, start, nil)
if as_known then return ok(false, nil, alerts, shown(first)) end
return ok(false, nil, alerts, shown(first), done)
