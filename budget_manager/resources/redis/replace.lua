-- Makes the given records the project's whole user dict, atomically; holds stay (see delete.lua).
-- The hierarchy was checked by the caller.
-- KEYS: marker, users, tree, each new user's budget, then each dropped user's budget.
-- ARGV: marker, the users the caller read (count, then names), the new users (count, then for
--       each: name, parent ('' none), field count, fields and values).
if call('GET', KEYS[1]) ~= ARGV[1] then return lost() end
local before = tonumber(ARGV[2])
if call('HLEN', KEYS[2]) ~= before then return {'err', 'retry'} end
for i = 1, before do
  if call('HEXISTS', KEYS[2], ARGV[2 + i]) == 0 then return {'err', 'retry'} end
end
local at = 3 + before
local count = tonumber(ARGV[at])
at = at + 1
local users = {}
for i = 1, count do
  local fields = tonumber(ARGV[at + 2])
  users[i] = {name = ARGV[at], parent = ARGV[at + 1], first = at + 3, last = at + 2 + fields}
  at = at + 3 + fields
end
for i = 4 + count, #KEYS do
  local held = call('HGET', KEYS[i], 'h')
  call('DEL', KEYS[i])
  if held then call('HSET', KEYS[i], 'h', held) end
end
call('DEL', KEYS[2], KEYS[3])
for i, u in ipairs(users) do
  call('HSET', KEYS[2], u.name, u.parent)
  if u.parent ~= '' then call('ZADD', KEYS[3], 0, u.parent .. '\0' .. u.name) end
  local key = KEYS[3 + i]
  local held = call('HGET', key, 'h')
  call('DEL', key)
  call('HSET', key, unpack(ARGV, u.first, u.last))
  if held then call('HSET', key, 'h', held) end
end
return ok(false)
