-- Adds an amount to every level's spend (see ledger.charge).
-- KEYS: marker, idempotency key (the marker again when there is none), then per level: budget,
--       open holds.
-- ARGV: marker, request fingerprint ('' without a key), key retention (s), amount, model ('' none),
--       now, limit check ('1' or '0'), most models per budget, thresholds (count, then 3 each),
--       levels (count, then 4 each).
--       Then, as for every change: the time, history retention (ms), cap, tokens, window end.
--       KEYS end with the history stream and its last id (every change's do).
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local fingerprint = ARGV[2]
if fingerprint ~= '' then
  local seen = call('GET', KEYS[2])
  if seen then
    if seen ~= fingerprint then return {'err', 'key_conflict'} end
    return ok(true, nil, nil, call('HGETALL', KEYS[3]))
  end
end
local ad, af = money(ARGV[4])
local model, now = ARGV[5], ARGV[6]
local most = tonumber(ARGV[8])
local thresholds = tonumber(ARGV[9])
local entries, rolled = verified(10 + 3 * thresholds, 3)
if not entries then return rolled end
if ARGV[7] == '1' then
  for _, e in ipairs(entries) do
    local hd, hf = holding(e, now)
    local refused = refusal(e, hd, hf, ad, af)
    if refused then return refused end
  end
end
local alerts = {}
for _, e in ipairs(entries) do
  if not room_for(e.rec, model, most) then return {'err', 'too_many_models', tostring(most), model} end
  spend(e, model, ad, af)
  crossings(e, e.name, 10, thresholds, alerts)
end
for _, e in ipairs(entries) do flush(e) end
if fingerprint ~= '' then call('SET', KEYS[2], fingerprint, 'EX', ARGV[3]) end
local first = entries[1].rec
history_event('charge', entries[1].name, model, ARGV[4], nil, nil, first.p and first.lu, ARGV[#ARGV])
return ok(false, rolled, alerts, shown(entries[1]))
