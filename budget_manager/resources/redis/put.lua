-- Creates or replaces a budget, refusing a missing parent, a cycle or too deep a hierarchy
-- (see ledger.put). The hierarchy is read from the users hash (user -> parent) and the tree
-- (a sorted set of "parent\0child", listed by prefix).
-- KEYS: marker, users, tree, budget.
-- ARGV: marker, user, parent ('' none), most levels, then the record's fields and values; then
--       the history tail (see charge.lua).
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local user, parent, most = ARGV[2], ARGV[3], tonumber(ARGV[4])
local depth, name = 1, parent
while name ~= '' do
  if name == user then return {'err', 'cycle', parent} end
  local up = call('HGET', KEYS[2], name)
  if not up then return {'err', 'no_parent', name} end
  depth = depth + 1
  if depth > most then break end
  name = up
end
local height, level = 1, {user}
for _ = 1, most + 1 do
  local below = {}
  for _, node in ipairs(level) do
    local kids = call('ZRANGEBYLEX', KEYS[3], '[' .. node .. '\0', '(' .. node .. '\1')
    for _, member in ipairs(kids) do below[#below + 1] = string.sub(member, #node + 2) end
  end
  if #below == 0 then break end
  height = height + 1
  level = below
end
if depth + height - 1 > most then return {'err', 'depth', tostring(depth + height - 1)} end
local old = call('HGET', KEYS[2], user)
if old ~= parent then
  if old and old ~= '' then call('ZREM', KEYS[3], old .. '\0' .. user) end
  if parent ~= '' then call('ZADD', KEYS[3], 0, parent .. '\0' .. user) end
end
call('HSET', KEYS[2], user, parent)
local held = call('HGET', KEYS[4], 'h')
call('DEL', KEYS[4])
call('HSET', KEYS[4], unpack(ARGV, 5, #ARGV - 5))
if held then call('HSET', KEYS[4], 'h', held) end
local rec = load(KEYS[4])
history_event('create', user, nil, '0', rec.b, nil, rec.p and rec.lu, ARGV[#ARGV])
return ok(false, nil, nil, call('HGETALL', KEYS[4]))
