-- Zeroes a budget's spend and per-model breakdown (see ledger.reset).
-- KEYS: marker, budget. ARGV: marker, user; then the history tail (see charge.lua).
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local rec, raw = load(KEYS[2])
if not rec or not rec.b then return {'err', 'unknown_user', ARGV[2]} end
local e = entry(KEYS[2], rec, raw)
put_field(e, 'c', '0')
for field in pairs(rec) do
  if string.sub(field, 1, 2) == 'm:' then drop_field(e, field) end
end
flush(e)
history_event('reset', ARGV[2], nil, '0', nil, nil, rec.p and rec.lu, nil)
return ok(false, nil, nil, shown(e))
