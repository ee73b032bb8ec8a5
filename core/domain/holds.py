"""Holds: tokens reserved before work starts, then captured (what the work used) or released.

A hold is placed by an idempotency key (its id is derived from the user and the key, so the
same key finds the same hold); the same key with another request is a conflict. It ends
exactly once: captured (0 … amount; the rest is released in the same step), released (by
the caller), or expired (by the expiry job, or found expired by a capture: 410). A second
capture answers the first only if it repeats the first capture's key and body. Every change
appends to the hold's history, so the record tells its whole story; the ledger sees a hold
only when it is captured (a ``spend`` entry that names it).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from core.domain.errors import HoldConflict, HoldExpired, InvalidRequest

OPEN, CAPTURED, RELEASED, EXPIRED = "open", "captured", "released", "expired"
MIN_TTL, MAX_TTL, DEFAULT_TTL = 10, 86_400, 900


@dataclass(frozen=True)
class Hold:
    id: str
    user_id: str
    amount: int
    expires_at: float
    created_at: float
    idempotency_key: str
    request_hash: str
    reason: str | None = None
    actor: str | None = None
    status: str = OPEN
    captured: int = 0
    released: int = 0
    entry_id: str | None = None
    capture_key: str | None = None
    capture_hash: str | None = None
    history: tuple[Mapping[str, Any], ...] = ()

    @property
    def key(self) -> str:
        return self.id

    def expired_at(self, now: float) -> bool:
        return self.status == OPEN and self.expires_at <= now

    def _then(self, now: float, action: str, by: str, changes: Mapping[str, Any] | None = None,
              **note: Any) -> "Hold":
        """The hold after ``changes``, with one more step in its history."""
        step = {"at": now, "action": action, "by": by, **note}
        return replace(self, history=self.history + (step,), **(changes or {}))

    def placed(self, now: float, actor: str, **note: Any) -> "Hold":
        return self._then(now, "placed", actor, amount=self.amount, expiresAt=self.expires_at, **note)

    def check_capture(self, amount: int, now: float) -> None:
        """Raise unless ``amount`` can be captured now (a replay is the caller's check first)."""
        self.ensure_open(now, "captured")
        if amount > self.amount:
            raise InvalidRequest(f"amount must be from 0 to the held {self.amount}", "amount")

    def capture(self, amount: int, key: str, digest: str, entry_id: str | None, now: float, actor: str,
                **note: Any) -> "Hold":
        """The hold captured for ``amount``, the rest released; raises if it cannot be."""
        self.check_capture(amount, now)
        return self._then(now, "captured", actor,
                          {"status": CAPTURED, "captured": amount, "released": self.amount - amount,
                           "entry_id": entry_id, "capture_key": key, "capture_hash": digest},
                          captured=amount, released=self.amount - amount, **note)

    def is_replay_of_capture(self, key: str, digest: str) -> bool:
        """Whether a capture request is the one that captured this hold; a different one conflicts."""
        if self.status != CAPTURED:
            return False
        if self.capture_key != key or self.capture_hash != digest:
            raise HoldConflict("this hold was already captured by a different request")
        return True

    def release(self, now: float, actor: str) -> "Hold | None":
        """The hold released, or None when it already was (released or expired: idempotent)."""
        if self.status in (RELEASED, EXPIRED):
            return None
        if self.status == CAPTURED:
            raise HoldConflict("this hold was captured; there is nothing left to release")
        if self.expired_at(now):
            return self.expire(now)
        return self._then(now, "released", actor, {"status": RELEASED, "released": self.amount})

    def expire(self, now: float) -> "Hold":
        return self._then(now, "expired", "expiry", {"status": EXPIRED, "released": self.amount})

    def extend(self, expires_at: float, now: float, actor: str) -> "Hold":
        self.ensure_open(now, "extended")
        return self._then(now, "extended", actor, {"expires_at": expires_at}, expiresAt=expires_at)

    def ensure_open(self, now: float, action: str) -> None:
        if self.status == EXPIRED or self.expired_at(now):
            raise HoldExpired(f"this hold expired; it cannot be {action}")
        if self.status != OPEN:
            raise HoldConflict(f"this hold is {self.status}; it cannot be {action}")


def ttl_seconds(value: object) -> int:
    if value is None:
        return DEFAULT_TTL
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_TTL <= value <= MAX_TTL:
        raise InvalidRequest(f"ttlSeconds must be a whole number from {MIN_TTL} to {MAX_TTL}", "ttlSeconds")
    return value
