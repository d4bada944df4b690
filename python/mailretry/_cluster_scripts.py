"""The Lua scripts of :mod:`mailretry.cluster`: each runs atomically on the
Redis server and reads Redis's own clock, so nodes with skewed clocks agree on
slot expiries and rate arrival times.
"""

# -- the Lua scripts (atomic on the server, on Redis's clock) ----------------------
# KEYS: conn (sorted set of slots by expiry), gcra (theoretical arrival time, ms),
# state (published cuts). ARGV: member, configured slots (0: none), slot TTL ms,
# configured interval ms (0: no rate), burst.
# Returns {1, 0}: admitted; {0, ms}: all slots taken (ms: first expiry);
# {2, ms}: rate, retry in ms; {-1, ms, reply}: suspended for ms more.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local st = redis.call('HMGET', KEYS[3], 'susp', 'conc', 'interval', 'structural', 'reply')
local susp = tonumber(st[1])
if susp and susp > now then return {-1, susp - now, st[5] or ''} end
local cap = tonumber(ARGV[2])
local cut = tonumber(st[2])
if cut and (cap == 0 or cut < cap) then cap = cut end
if st[4] == '1' and (cap == 0 or cap > 1) then cap = 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now}
end
local interval = tonumber(ARGV[4])
local slower = tonumber(st[3])
if slower and slower > interval then interval = slower end
if interval > 0 then
  local tau = interval * (tonumber(ARGV[5]) - 1)
  local tat = tonumber(redis.call('GET', KEYS[2])) or now
  if tat < now then tat = now end
  if tat - now > tau then return {2, tat - tau - now} end
  tat = tat + interval
  redis.call('SET', KEYS[2], tat, 'PX', math.max(1, math.floor(tat - now + interval)))
end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return {1, 0}
"""

# KEYS: conn. ARGV: slot TTL ms, members... Extends the slots still held.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 0
"""

# KEYS: state. ARGV: what ('throttle', 'suspend', 'structural', 'cleared'),
# slots (0: none), interval ms (0: none), suspended until (epoch ms), reply,
# origin node, TTL ms. Cuts only tighten (fewest slots, longest interval,
# latest end) until the hash expires.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local what = ARGV[1]
if what == 'throttle' then
  local c = tonumber(ARGV[2])
  local old = tonumber(redis.call('HGET', KEYS[1], 'conc'))
  if c > 0 and (not old or c < old) then redis.call('HSET', KEYS[1], 'conc', c) end
  local iv = tonumber(ARGV[3])
  old = tonumber(redis.call('HGET', KEYS[1], 'interval'))
  if iv > 0 and (not old or iv > old) then redis.call('HSET', KEYS[1], 'interval', iv) end
elseif what == 'suspend' then
  local u = tonumber(ARGV[4])
  local old = tonumber(redis.call('HGET', KEYS[1], 'susp'))
  if not old or u > old then redis.call('HSET', KEYS[1], 'susp', u) end
elseif what == 'structural' then
  redis.call('HSET', KEYS[1], 'structural', '1')
elseif what == 'cleared' then
  redis.call('HDEL', KEYS[1], 'structural', 'conc', 'interval')
end
redis.call('HSET', KEYS[1], 'reply', ARGV[5], 'origin', ARGV[6], 'at', now)
local ttl = tonumber(ARGV[7])
local s = tonumber(redis.call('HGET', KEYS[1], 'susp'))
if s and s - now > ttl then ttl = s - now end
redis.call('PEXPIRE', KEYS[1], math.max(1, math.floor(ttl)))
return 0
"""


# KEYS: seq, changes. ARGV: the state key's prefix. Numbers the change and
# keeps the newest 10000.
_INDEX = """
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -10001)
return seq
"""
