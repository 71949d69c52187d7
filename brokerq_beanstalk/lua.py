"""The guard's Lua scripts, sent with EVAL (brokerq_beanstalk.guard).

Each touches the keys of one job only, passed explicitly in KEYS (one hash tag), so they run
on Redis Cluster and proxies. Names start with an underscore: internal to the guard.
"""

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


# KEYS: claim, done, retry, claims, unique (one hash tag); ARGV: token, claim ms, done ms,
# generation ('' = none) → {claimed, done, retry, claims taken}; a copy of an earlier job
# with this caller-chosen id (its generation is not the reserved one) comes back 'stale'
_ACQUIRE = (
    "if ARGV[4] ~= '' then local u = redis.call('get', KEYS[5]) "
    "if u and string.sub(u, 1, #ARGV[4] + 1) ~= ARGV[4] .. ' ' then "
    "return {0, 'stale', false, 0} end end "
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
# KEYS: copies, done, unique; ARGV: revoked-mark ms beyond the due time, explicit copies
# (1/0) → {revoked now, copies record}; the mark lives until the job's due time + ARGV[1];
# a revoked job frees its caller-chosen id at once
_REVOKE = (
    "local copies = redis.call('get', KEYS[1]) "
    "if redis.call('exists', KEYS[2]) == 1 then return {0, copies} end "
    "if not copies and ARGV[2] == '0' then return {0, false} end "
    "local ms = tonumber(ARGV[1]) "
    "if copies then local due = tonumber(string.match(copies, '^(%S+)')) "
    "local t = redis.call('time') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
    "if due and due * 1000 > now then ms = ms + math.ceil(due * 1000 - now) end end "
    "redis.call('set', KEYS[2], 'revoked', 'PX', ms) "
    "redis.call('del', KEYS[3]) "
    "return {1, copies}"
)
# the end of a job (KEYS[3] unique, KEYS[4] fin; ARGV[1] status, ARGV[4] now, ARGV[5] keep
# ms): its caller-chosen id stays reserved for the unique_for ms its record ends with (0:
# freed now), and "<status> <now> <created>" is remembered keep ms (0: not at all) for
# Broker.job (created: from the reservation, '' without one)
_FINISH = (
    "local u = redis.call('get', KEYS[3]) "
    "if u then local ms = tonumber(string.match(u, '(%d+)$')) "
    "if ms and ms > 0 then redis.call('pexpire', KEYS[3], ms) "
    "else redis.call('del', KEYS[3]) end end "
    "if tonumber(ARGV[5]) > 0 then local c = u and string.match(u, '^%S+ (%S+)') or '' "
    "redis.call('set', KEYS[4], ARGV[1] .. ' ' .. ARGV[4] .. ' ' .. c, 'PX', ARGV[5]) end "
)
# KEYS: done, claim, unique, fin; ARGV: status, done ms, token, now, keep ms → set the done
# mark, drop the claim if ours, then _FINISH
_DONE = (
    "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "if redis.call('get', KEYS[2]) == ARGV[3] then redis.call('del', KEYS[2]) end "
    + _FINISH
    + "return 1"
)
# KEYS: -, -, unique, fin; ARGV: status, -, -, now, keep ms → _FINISH alone (dead letters)
_END = _FINISH + "return 1"

# KEYS: unique, done, retry, claims, dead, copies, fin, claim (one hash tag); ARGV: record
# "<generation> <created> <due> <unique_for ms>", its ttl ms → {1} when reserved, else
# {0, state, record}: state done|dead (finished, still reserved), running, retrying or
# queued. A free id (never used, its reservation over, revoked, or reserved by this very
# generation: a dead letter run again) drops what the guard remembers of its earlier job
# (stale copies of it are told apart by their generation).
_RESERVE = (
    "local u = redis.call('get', KEYS[1]) "
    "local d = redis.call('get', KEYS[2]) "
    "local g = string.match(ARGV[1], '^%S+ ') "
    "if u and d ~= 'revoked' and string.sub(u, 1, #g) ~= g then "
    "if d then return {0, d, u} end "
    "if redis.call('exists', KEYS[8]) == 1 then return {0, 'running', u} end "
    "if redis.call('exists', KEYS[3]) == 1 then return {0, 'retrying', u} end "
    "return {0, 'queued', u} end "
    "redis.call('del', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]) "
    "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "return {1}"
)
# KEYS: unique; ARGV: generation → drop the reservation if it is still this generation's
_UNRESERVE = (
    "local u = redis.call('get', KEYS[1]) "
    "if u and string.sub(u, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then "
    "return redis.call('del', KEYS[1]) end return 0"
)
# KEYS: unique, done, claim, claims, retry, copies, dead, fin → every value (Broker.job)
_SNAPSHOT = (
    "local out = {} for i, k in ipairs(KEYS) do out[i] = redis.call('get', k) or '' end return out"
)
