"""Disputes: an open dispute freezes the account's spending; closing it lifts the freeze.

A dispute is opened once; a redelivered or late ``created`` never reopens a dispute that is
already known (open or closed). It closes once, with Stripe's final status; ``lost`` also
takes back what remains of the disputed payment (``Payment.reverse_for_dispute``). Every
status of the pinned API version is known: the closed ones are ``won``, ``lost``,
``warning_closed`` and ``prevented``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

OPEN_STATUSES = frozenset({"warning_needs_response", "warning_under_review", "needs_response", "under_review"})
CLOSED_STATUSES = frozenset({"won", "lost", "warning_closed", "prevented"})
STATUSES = OPEN_STATUSES | CLOSED_STATUSES
LOST = "lost"


@dataclass(frozen=True)
class Dispute:
    id: str
    user_id: str
    payment_intent: str | None = None
    status: str | None = None
    closed: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.id


def is_closing(status: object) -> bool:
    return status in CLOSED_STATUSES


def open_dispute(existing: Dispute | None, dispute: Dispute) -> Dispute | None:
    """The dispute to store if this opens it; None if it is already known."""
    if existing is not None:
        return None
    return replace(dispute, closed=False)


def close_dispute(existing: Dispute | None, dispute: Dispute) -> Dispute | None:
    """The closed dispute to store; None if it was already closed."""
    if existing is not None and existing.closed:
        return None
    return replace(dispute, closed=True)
