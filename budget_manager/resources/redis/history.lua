-- Reads the history stream between two ids, oldest first (or newest first when reversed).
-- KEYS: marker, stream. ARGV: marker, from id, to id, most entries, '1' for newest first.
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
if ARGV[5] == '1' then
  return {'ok', call('XREVRANGE', KEYS[2], ARGV[3], ARGV[2], 'COUNT', ARGV[4])}
end
return {'ok', call('XRANGE', KEYS[2], ARGV[2], ARGV[3], 'COUNT', ARGV[4])}
