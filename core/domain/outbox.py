"""Outgoing events: what changed on an account, written in the same transaction as the change.

An account numbers its events (``seq``, 1, 2, …), so receivers can order them; an event's id
is derived from the account and that number, so a transaction that runs again writes the
same event, and a receiver sees the same id however often it is delivered. No change is
committed without its event and no event without its change: both are values of the same
unit of work (the account carries the events it emitted until the unit of work writes them).

``balance.low`` and ``balance.depleted`` depend on each endpoint's threshold, so they are
not stored: each ``tokens.*`` event carries ``balanceBefore`` and ``balanceAfter``, and the
fan-out derives them per endpoint (``derived_types``), once per downward crossing.

The fan-out turns each stored event into the ``Message``s one endpoint gets (``messages_for``):
the event itself if the endpoint subscribed to its type, then the balance events it implies
for that endpoint. A derived message's id is its event's id and a suffix, so it too is the
same on every delivery; ``position`` orders an account's messages (seq, then derived ones).
``OutboxCursor`` is the last seq of an account whose messages were all queued: the fan-out
always continues from it, so no event is queued before an earlier one of its account.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
    dispatched: bool = False  # its messages are queued for every endpoint subscribed to them

    @property
    def key(self) -> str:
        return self.id

    def payload(self) -> dict:
        """The body receivers get (Standard Webhooks: ``type``, ``timestamp`` in ISO 8601, ``data``)."""
        return {"type": self.type, "id": self.id, "timestamp": iso_time(self.created_at),
                "data": {"userId": self.user_id, "seq": self.seq, **self.data}}


def iso_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Message:
    """What one endpoint receives for one event: the event itself, or a balance event it implies."""
    id: str
    type: str
    event_id: str
    user_id: str
    seq: int
    position: int  # an account's order: seq * 4, then + 1 for balance.low, + 2 for balance.depleted
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class OutboxCursor:
    user_id: str
    dispatched_seq: int = 0  # every event up to this seq has its messages queued

    @property
    def key(self) -> str:
        return self.user_id


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


_DERIVED = {BALANCE_LOW: ("low", 1), BALANCE_DEPLETED: ("depleted", 2)}


def messages_for(event: AccountEvent, types: frozenset[str] | set[str], low_threshold: int | None) -> list[Message]:
    """The messages an endpoint subscribed to ``types`` (with this threshold) gets for ``event``, in order."""
    out = []
    if event.type in types:
        out.append(Message(event.id, event.type, event.id, event.user_id, event.seq, event.seq * 4, event.payload()))
    for kind in derived_types(event, low_threshold if BALANCE_LOW in types else None):
        if kind not in types:
            continue
        suffix, offset = _DERIVED[kind]
        data = {"userId": event.user_id, "seq": event.seq, "balance": event.data["balanceAfter"],
                "balanceBefore": event.data["balanceBefore"], "causedBy": event.id, "causedByType": event.type}
        if kind == BALANCE_LOW:
            data["threshold"] = low_threshold
        message_id = f"{event.id}_{suffix}"
        out.append(Message(message_id, kind, event.id, event.user_id, event.seq, event.seq * 4 + offset,
                           {"type": kind, "id": message_id, "timestamp": iso_time(event.created_at), "data": data}))
    return out
