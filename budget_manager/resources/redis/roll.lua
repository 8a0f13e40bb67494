-- Starts each level's window if it is later than its current period (see ledger.roll).
-- KEYS: marker, then each level's budget. ARGV: marker, levels (count, then 4 each); then the
-- history tail (see charge.lua), its window end being each level's ('-': none), joined by ','.
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local n = tonumber(ARGV[2])
local rolled, entries, first = {}, {}, nil
local ends = {}
for v in gmatch(ARGV[#ARGV], '[^,]+') do ends[#ends + 1] = v end
for i = 1, n do
  local base = 3 + 4 * (i - 1)
  local name = ARGV[base]
  local rec, raw = load(KEYS[1 + i])
  if not rec or not rec.b then
    if i == 1 then return {'err', 'unknown_user', name} end
  else
    if not describes(rec, ARGV[base + 1], ARGV[base + 2]) then return {'err', 'chain', name} end
    local e = entry(KEYS[1 + i], rec, raw)
    if advance(e, ARGV[base + 3]) then
      rolled[#rolled + 1] = name
      local we = ends[i]
      if we == '-' then we = nil end
      history_event('roll', name, nil, '0', nil, nil, ARGV[base + 3], we)
    end
    entries[#entries + 1] = e
    first = first or e
  end
end
for _, e in ipairs(entries) do flush(e) end
return ok(false, rolled, nil, shown(first))
