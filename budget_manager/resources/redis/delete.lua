-- Removes a budget, refused while others name it as their parent (see ledger.delete). The sum
-- of its open holds stays (see lib.lua), as does the set of them.
-- KEYS: marker, users, tree, budget. ARGV: marker, user; then the history tail (see charge.lua).
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local user = ARGV[2]
local parent = call('HGET', KEYS[2], user)
if not parent then return ok(true) end
local kids = call('ZRANGEBYLEX', KEYS[3], '[' .. user .. '\0', '(' .. user .. '\1', 'LIMIT', 0, 6)
if #kids > 0 then
  local out = {'err', 'children'}
  for _, member in ipairs(kids) do out[#out + 1] = string.sub(member, #user + 2) end
  return out
end
call('HDEL', KEYS[2], user)
if parent ~= '' then call('ZREM', KEYS[3], parent .. '\0' .. user) end
local held = call('HGET', KEYS[4], 'h')
call('DEL', KEYS[4])
if held then call('HSET', KEYS[4], 'h', held) end
history_event('delete', user, nil, '0', nil, nil, nil, nil)
return ok(false)
