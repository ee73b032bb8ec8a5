"""Outgoing events: what changed on an account, written in the same transaction as the change.

An account numbers its events (``seq``, 1, 2, …), so receivers can order them; an event's id
is derived from the account and that number, so a transaction that runs again writes the
same event, and a receiver sees the same id however often it is delivered. No change is
committed without its event and no event without its change: both are values of the same
unit of work (the account carries the events it emitted until the unit of work writes them).

``balance.low`` and ``balance.depleted`` depend on each endpoint's threshold, so they are
not stored: each ``tokens.*`` event carries ``balanceBefore`` and ``balanceAfter``, and the
fan-out derives them per endpoint (``derived_types``), once per downward crossing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

CREDITED, DEBITED, REFUNDED = "tokens.credited", "tokens.debited", "tokens.refunded"
PURCHASE_FAILED = "purchase.failed"
BALANCE_LOW, BALANCE_DEPLETED = "balance.low", "balance.depleted"
LOT_EXPIRING, LOT_EXPIRED = "lot.expiring", "lot.expired"
HOLD_CREATED, HOLD_CAPTURED, HOLD_RELEASED, HOLD_EXPIRED = "hold.created", "hold.captured", "hold.released", \
    "hold.expired"
FROZEN, UNFROZEN = "account.frozen", "account.unfrozen"
EVENT_TYPES = (CREDITED, DEBITED, REFUNDED, PURCHASE_FAILED, BALANCE_LOW, BALANCE_DEPLETED, LOT_EXPIRING, LOT_EXPIRED,
               HOLD_CREATED, HOLD_CAPTURED, HOLD_RELEASED, HOLD_EXPIRED, FROZEN, UNFROZEN)
STORED_TYPES = tuple(t for t in EVENT_TYPES if t not in (BALANCE_LOW, BALANCE_DEPLETED))


@dataclass(frozen=True)
class AccountEvent:
    id: str
    user_id: str
    seq: int
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @property
    def key(self) -> str:
        return self.id

    def payload(self) -> dict:
        """The body receivers get (Standard Webhooks: ``type``, ``timestamp``, ``data``)."""
        return {"type": self.type, "id": self.id, "timestamp": self.created_at,
                "data": {"userId": self.user_id, "seq": self.seq, **self.data}}


def event_id(user_id: str, seq: int) -> str:
    return f"ev_{hashlib.sha256(user_id.encode()).hexdigest()[:24]}_{seq}"


def new_event(user_id: str, seq: int, event_type: str, now: float, **data: Any) -> AccountEvent:
    if event_type not in STORED_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    return AccountEvent(event_id(user_id, seq), user_id, seq, event_type, data, now)


def derived_types(event: AccountEvent, low_threshold: int | None) -> list[str]:
    """The balance events this ``tokens.*`` event means for an endpoint with this threshold."""
    before, after = event.data.get("balanceBefore"), event.data.get("balanceAfter")
    if not isinstance(before, int) or not isinstance(after, int) or after >= before:
        return []
    derived = []
    if low_threshold is not None and before >= low_threshold > after:
        derived.append(BALANCE_LOW)
    if before > 0 >= after:
        derived.append(BALANCE_DEPLETED)
    return derived
