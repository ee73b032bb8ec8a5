"""The purchase gate: paid purchases plus open checkouts per user, in sliding windows.

Before a Checkout Session is created, the user's fulfilled purchases in the last hour and
day (``core.velocity``'s sorted set) plus their still-open checkout reservations must stay
under the limits. One Lua round trip checks and reserves atomically, so ten requests at once
for one user get exactly ``per_hour`` sessions.

A reservation is a member of ``tb:reservations:{uid}`` scored with its expiry (ms). It stops
counting when it expires (sessions are created with a 30-minute ``expires_at``), when
``checkout.session.expired`` releases it, or when the purchase is fulfilled (the velocity
script moves it into the paid set). Abandoned checkouts never lock a user out for long.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from core import redis_keys
from core.adapters.velocity import DAY_MS, HOUR_MS

_RESERVE = """
local paid, held = KEYS[1], KEYS[2]
local member, now, expiry = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local hour, day, per_hour, per_day = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
redis.call('ZREMRANGEBYSCORE', paid, '-inf', now - day)
local already = redis.call('ZSCORE', held, member)
local open = redis.call('ZCARD', held)
local in_hour = redis.call('ZCOUNT', paid, now - hour, '+inf') + open
local in_day = redis.call('ZCARD', paid) + open
if already then
  redis.call('ZADD', held, expiry, member)
  return {1, 0, in_hour, in_day}
end
if in_hour < per_hour and in_day < per_day then
  redis.call('ZADD', held, expiry, member)
  redis.call('PEXPIRE', held, expiry - now + 60000)
  return {1, 0, in_hour + 1, in_day + 1}
end
-- Refused: when does the first place free up? The earliest open reservation expiring,
-- or the oldest paid purchase leaving the binding window.
local wait = nil
local first_held = redis.call('ZRANGE', held, 0, 0, 'WITHSCORES')
if first_held[2] then wait = tonumber(first_held[2]) - now end
local function oldest_after(since, window)
  local row = redis.call('ZRANGEBYSCORE', paid, since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if row[2] then return tonumber(row[2]) + window - now end
  return nil
end
local paid_wait = nil
if in_day >= per_day then paid_wait = oldest_after(now - day, day) end
if in_hour >= per_hour then
  local w = oldest_after(now - hour, hour)
  if w and (not paid_wait or w > paid_wait) then paid_wait = w end
end
if paid_wait and (not wait or paid_wait < wait) then wait = paid_wait end
return {0, wait or hour, in_hour, in_day}
"""

_SWAP = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    retry_after_seconds: int
    last_hour: int
    last_day: int


def reserve(redis, user_id: str, member: str, now_ms: int, expires_at_ms: int, per_hour: int, per_day: int) -> GateDecision:
    allowed, wait_ms, hour, day = redis.eval(
        _RESERVE, 2, redis_keys.velocity(user_id), redis_keys.reservations(user_id),
        member, now_ms, expires_at_ms, HOUR_MS, DAY_MS, per_hour, per_day)
    return GateDecision(bool(int(allowed)), max(1, math.ceil(int(wait_ms) / 1000)) if not int(allowed) else 0,
                        int(hour), int(day))


def confirm(redis, user_id: str, placeholder: str, session_id: str, expires_at_ms: int) -> None:
    """Replace the placeholder reservation by the created session's id."""
    redis.eval(_SWAP, 1, redis_keys.reservations(user_id), placeholder, session_id, expires_at_ms)


def release(redis, user_id: str, member: str) -> None:
    redis.zrem(redis_keys.reservations(user_id), member)
