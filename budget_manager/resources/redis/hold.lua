-- Holds an amount against every level until it expires (see ledger.hold).
-- KEYS: marker, hold, then per level: budget, open holds.
-- ARGV: marker, hold id, user, amount, expires at, now, model ('' none), limit check ('1' or
--       '0'), how long to keep the hold's record (ms), levels (count, then 4 each); then the
--       history tail (see charge.lua).
-- A new hold is answered with its levels only (the caller knows the rest); a repeated hold id
-- with the hold as stored (see read_hold).
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local hold_id, user, amount, expires, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local existing = read_hold(KEYS[2])
if existing then
  if existing.u ~= user or existing.a ~= amount then return {'err', 'hold_conflict'} end
  return ok(true, nil, nil, call('HGETALL', KEYS[3]), existing.raw)
end
local entries, rolled = verified(10, 3)
if not entries then return rolled end
local ad, af = money(amount)
if ARGV[8] == '1' then
  for _, e in ipairs(entries) do
    local hd, hf = holding(e, now)
    local refused = refusal(e, hd, hf, ad, af)
    if refused then return refused end
  end
end
local parts, sums = {}, {}
for i, e in ipairs(entries) do
  parts[#parts + 1] = e.name
  parts[#parts + 1] = (e.rec.p and e.rec.lu) or ''
  local hd, hf = money(e.rec.h)
  sums[i] = text(plus(hd, hf, ad, af))
end
local levels = concat(parts, '\1')
call('SET', KEYS[2], concat({user, amount, levels, expires, now, 'open', ARGV[7], ''}, '\2'),
  'PX', ARGV[9])
local member = amount .. '|' .. hold_id
for i, e in ipairs(entries) do
  call('ZADD', e.zkey, expires, member)
  put_field(e, 'h', sums[i])
  flush(e)
end
local first = entries[1].rec
history_event('hold', user, ARGV[7], '0', amount, hold_id, first.p and first.lu, ARGV[#ARGV])
return ok(false, rolled, nil, shown(entries[1]), levels)
