"""Purchase velocity: sliding windows of fulfilled purchases per user, kept in Redis.

One sorted set per user (member: checkout session id, score: milliseconds). Recording a
purchase, releasing its checkout reservation (core.purchase_gate) and reading both windows
is one round trip (a Lua script). The same session
recorded twice counts once, so redelivered events do not inflate the count.
"""
from __future__ import annotations

from dataclasses import dataclass

from core import redis_keys

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS

_RECORD = """
local key, held, member = KEYS[1], KEYS[2], ARGV[1]
local now, hour, day = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - day)
local added = redis.call('ZADD', key, 'NX', now, member)
redis.call('ZREM', held, member)  -- a paid checkout is no longer an open reservation
redis.call('PEXPIRE', key, day)
return {redis.call('ZCOUNT', key, now - hour, '+inf'), redis.call('ZCARD', key), added}
"""


@dataclass(frozen=True)
class Velocity:
    last_hour: int
    last_day: int
    newly_recorded: bool = True  # False when this session was already in the window

    def over(self, per_hour: int, per_day: int) -> bool:
        return self.last_hour > per_hour or self.last_day > per_day


def record_purchase(redis, user_id: str, session_id: str, now_ms: int) -> Velocity:
    hour, day, added = redis.eval(_RECORD, 2, redis_keys.velocity(user_id), redis_keys.reservations(user_id),
                                  session_id, now_ms, HOUR_MS, DAY_MS)
    return Velocity(int(hour), int(day), bool(int(added)))
