-- Zeroes a budget's spend and per-model breakdown (see ledger.reset).
-- KEYS: marker, budget. ARGV: marker, user.
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local rec, raw = load(KEYS[2])
if not rec or not rec.b then return {'err', 'unknown_user', ARGV[2]} end
local e = entry(KEYS[2], rec, raw)
put_field(e, 'c', '0')
for field in pairs(rec) do
  if string.sub(field, 1, 2) == 'm:' then drop_field(e, field) end
end
flush(e)
return ok(false, nil, nil, shown(e))
