"""One delivery run per webhook endpoint at a time, on Redis (core.ports.EndpointLock).

The lock keeps an endpoint's messages in order: only its holder sends them. It expires after
``ttl_ms`` (longer than a run may last), so a worker that dies holding it delays the endpoint by
that much at most. A run asked for while the lock is held leaves a mark the holder takes before it
stops, so the request is not lost. Losing Redis loses no message: the queue is in Firestore, and
the outbox sweep asks for a run again.
"""
from __future__ import annotations

import secrets

from core import redis_keys

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
KICK_TTL_SECONDS = 300


class RedisEndpointLock:
    def __init__(self, redis, ttl_ms: int):
        self.redis = redis
        self.ttl_ms = ttl_ms

    def acquire(self, endpoint_id: str) -> str | None:
        token = secrets.token_hex(8)
        return token if self.redis.set(redis_keys.endpoint_lock(endpoint_id), token, nx=True, px=self.ttl_ms) else None

    def release(self, endpoint_id: str, token: str) -> None:
        self.redis.eval(_RELEASE, 1, redis_keys.endpoint_lock(endpoint_id), token)

    def note_kick(self, endpoint_id: str) -> None:
        self.redis.set(redis_keys.endpoint_kicked(endpoint_id), "1", ex=KICK_TTL_SECONDS)

    def take_kick(self, endpoint_id: str) -> bool:
        return bool(self.redis.delete(redis_keys.endpoint_kicked(endpoint_id)))
