"""The purchase gate, the velocity windows and the per-user lock on Redis, as one port object.

``RedisLimits`` implements ``core.ports.PurchaseGate`` and ``core.ports.UserLock`` over the
Lua scripts of purchase_gate.py, velocity.py and user_lock.py, with the limits and lock
timings from Settings. Redis holds no money here: losing it loosens a limit or a lock,
never a balance (the Firestore transaction alone keeps money correct).
"""
from __future__ import annotations

from core import redis_keys
from core.adapters import purchase_gate, user_lock, velocity


class RedisLimits:
    def __init__(self, redis, settings):
        self.redis = redis
        self.settings = settings

    # -- PurchaseGate ---------------------------------------------------------------------
    def reserve(self, user_id: str, member: str, now_ms: int, expires_at_ms: int) -> purchase_gate.GateDecision:
        s = self.settings
        return purchase_gate.reserve(self.redis, user_id, member, now_ms, expires_at_ms, s.purchases_per_hour,
                                     s.purchases_per_day)

    def confirm(self, user_id: str, placeholder: str, session_id: str, expires_at_ms: int) -> None:
        purchase_gate.confirm(self.redis, user_id, placeholder, session_id, expires_at_ms)

    def release(self, user_id: str, member: str) -> None:
        purchase_gate.release(self.redis, user_id, member)

    def record_purchase(self, user_id: str, session_id: str, now_ms: int) -> velocity.Velocity:
        return velocity.record_purchase(self.redis, user_id, session_id, now_ms)

    def windows_known(self, user_id: str) -> bool:
        return bool(self.redis.exists(redis_keys.windows_known(user_id)))

    def restore(self, user_id: str, purchases: list[tuple[str, int]], open_checkouts: list[tuple[str, int]]) -> None:
        """Put back what Firestore says (members are session ids, so nothing counts twice), then
        mark the windows known for a day (the longest window)."""
        pipe = self.redis.pipeline(transaction=True)
        if purchases:
            pipe.zadd(redis_keys.velocity(user_id), {session: ms for session, ms in purchases})
        if open_checkouts:
            pipe.zadd(redis_keys.reservations(user_id), {session: ms for session, ms in open_checkouts})
        pipe.set(redis_keys.windows_known(user_id), "1", ex=25 * 3600)
        pipe.execute()

    # -- UserLock -------------------------------------------------------------------------
    def __call__(self, user_id: str):
        s = self.settings
        return user_lock.user_lock(self.redis, user_id, s.user_lock_ttl_ms, s.user_lock_wait_seconds)
