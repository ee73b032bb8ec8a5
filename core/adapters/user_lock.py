"""A short per-user lock in Redis that serialises credits to one account.

Firestore allows about one write per second per document and the emulator turns
concurrent transactions on one document into 2 s lock waits. Credits to one user
therefore queue here first. The Firestore transaction alone still guarantees correctness
if the lock expires or is lost: the lock buys throughput, never safety.
"""
from __future__ import annotations

import random
import secrets
import time
from contextlib import contextmanager

from core import redis_keys
from core.errors import TransientError

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextmanager
def user_lock(redis, user_id: str, ttl_ms: int, wait_seconds: float, sleep=time.sleep, clock=time.monotonic):
    key, token = redis_keys.user_lock(user_id), secrets.token_hex(8)
    deadline = clock() + wait_seconds
    delay = 0.001
    while not redis.set(key, token, nx=True, px=ttl_ms):
        if clock() >= deadline:
            raise TransientError(f"user {user_id!r} is busy: lock not acquired in {wait_seconds}s")
        sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.02)
    try:
        yield
    finally:
        redis.eval(_RELEASE, 1, key, token)
