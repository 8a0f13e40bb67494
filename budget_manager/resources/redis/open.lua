-- The project's marker: set to ARGV[1] when the project is new, returned as it is otherwise.
-- A marker missing where the caller saw one (ARGV[2]) means Redis lost the data: nothing is set.
-- KEYS: marker. ARGV: a fresh marker value, the marker seen before ('' none).
local found = call('GET', KEYS[1])
if found then return {'ok', found} end
if ARGV[2] ~= '' then return lost() end
call('SET', KEYS[1], ARGV[1])
return {'ok', ARGV[1]}
