"""The guard's Lua scripts, sent with EVAL (brokerq_beanstalk.guard).

Each touches the keys of one job only, passed explicitly in KEYS (one hash tag), so they run
on Redis Cluster and proxies. Names start with an underscore: internal to the guard.
"""

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


# KEYS: claim, done, retry, claims (one hash tag); ARGV: token, claim ms, done ms
# → {claimed, done, retry, claims taken}
_ACQUIRE = (
    "local c = redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) "
    "local n = 0 "
    "if c then n = redis.call('incr', KEYS[4]) redis.call('pexpire', KEYS[4], ARGV[3]) end "
    "return {c and 1 or 0, redis.call('get', KEYS[2]), redis.call('get', KEYS[3]), n}"
)
# KEYS: claim, claims; ARGV: token → drop our claim and take back its count (not processed)
_GIVE_BACK = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) "
    "if tonumber(redis.call('get', KEYS[2]) or '0') > 0 then redis.call('decr', KEYS[2]) end "
    "return 1 end return 0"
)
# KEYS: copies, done; ARGV: revoked-mark ms beyond the due time, explicit copies (1/0)
# → {revoked now, copies record}; the mark lives until the job's due time + ARGV[1]
_REVOKE = (
    "local copies = redis.call('get', KEYS[1]) "
    "if redis.call('exists', KEYS[2]) == 1 then return {0, copies} end "
    "if not copies and ARGV[2] == '0' then return {0, false} end "
    "local ms = tonumber(ARGV[1]) "
    "if copies then local due = tonumber(string.match(copies, '^(%S+)')) "
    "local t = redis.call('time') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "if due and due * 1000 > now then ms = ms + math.ceil(due * 1000 - now) end end "
    "redis.call('set', KEYS[2], 'revoked', 'PX', ms) "
    "return {1, copies}"
)
# KEYS: done, claim; ARGV: status, done ms, token → set the done mark, drop the claim if ours
_DONE = (
    "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "if redis.call('get', KEYS[2]) == ARGV[3] then redis.call('del', KEYS[2]) end return 1"
)
