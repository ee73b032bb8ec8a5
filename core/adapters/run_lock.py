"""One run at a time per key, on Redis (core.ports.RunLock): an endpoint's delivery run, an account's fan-out.

The lock keeps order where order matters: only its holder sends an endpoint's messages, or
queues an account's events. It expires after ``ttl_ms`` (longer than a run may last), so a worker
that dies holding it delays the work by that much at most. A run asked for while the lock is held
leaves a mark the holder takes before it stops, so the request is not lost. Losing Redis loses
nothing: the outbox and the queues are in Firestore, and the outbox sweep asks for runs again.
"""
from __future__ import annotations

import secrets

from core import redis_keys

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
KICK_TTL_SECONDS = 300


class RedisRunLock:
    def __init__(self, redis, ttl_ms: int):
        self.redis = redis
        self.ttl_ms = ttl_ms

    def acquire(self, key: str) -> str | None:
        token = secrets.token_hex(8)
        return token if self.redis.set(redis_keys.run_lock(key), token, nx=True, px=self.ttl_ms) else None

    def release(self, key: str, token: str) -> None:
        self.redis.eval(_RELEASE, 1, redis_keys.run_lock(key), token)

    def note_kick(self, key: str) -> None:
        self.redis.set(redis_keys.run_kicked(key), "1", ex=KICK_TTL_SECONDS)

    def take_kick(self, key: str) -> bool:
        return bool(self.redis.delete(redis_keys.run_kicked(key)))
