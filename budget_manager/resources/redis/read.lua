-- Reads several keys at once. KEYS: marker, then the keys.
-- ARGV: marker, what to read of each key: 'hash' (HGETALL), 'fields' (HKEYS), 'members' (ZRANGE),
--       'string' (GET; false when absent).
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local out = {'ok'}
local what = ARGV[2]
for i = 2, #KEYS do
  if what == 'hash' then
    out[i] = call('HGETALL', KEYS[i])
  elseif what == 'string' then
    out[i] = call('GET', KEYS[i])
  elseif what == 'fields' then
    out[i] = call('HKEYS', KEYS[i])
  else
    out[i] = call('ZRANGE', KEYS[i], 0, -1)
  end
end
return out
