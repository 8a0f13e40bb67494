-- Frees a hold, recording nothing (see ledger.release).
-- KEYS: marker, hold, then per level of the hold: budget, open holds.
-- ARGV: marker, hold id, the hold's levels (count, then name and period start each); then the
--       history tail (see charge.lua).
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local hold_id = ARGV[2]
local hold = read_hold(KEYS[2])
if not hold then return {'err', 'unknown_hold'} end
local n = tonumber(ARGV[3])
local parts = {}
for i = 1, 2 * n do parts[i] = ARGV[3 + i] end
local levels = concat(parts, '\1')
if hold.l ~= levels then return {'err', 'relevel', hold.l} end
if hold.s ~= 'open' then return ok(true, nil, nil, call('HGETALL', KEYS[3]), hold.raw) end
local hd, hf = money(hold.a)
local member = hold.a .. '|' .. hold_id
local first = nil
for i = 1, n do
  local key = KEYS[1 + 2 * i]
  local rec, raw = load(key)
  local e = nil
  if rec then e = entry(key, rec, raw) end
  unhold(e, KEYS[2 + 2 * i], member, hd, hf)
  if e then flush(e) end
  if i == 1 and rec and rec.b then first = e end
end
hold.s = 'released'
local done = packed(hold)
call('SET', KEYS[2], done, 'KEEPTTL')
local start = parts[2]
if start == '' then start = nil end
history_event('release', hold.u, hold.m, '0', hold.a, hold_id, start, nil)
return ok(false, nil, nil, shown(first), done)
