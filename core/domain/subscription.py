"""The subscription mirror: which Stripe subscription state a user's record shows.

Stripe delivers subscription events out of order, and a user may have had several
subscriptions. The mirrored state (``id``, ``status``, ``plan``, ``currentPeriodEnd``,
``cancelAtPeriodEnd``, ``created`` — the subscription's own creation time — and
``eventCreated`` — the event's) is replaced only by:

- news of the same subscription that is at least as new as what is stored;
- another subscription that is live, when the stored one has ended or is older.

So the end of an older subscription never overwrites the current one, and the current
one's later payment failure still finds it.
"""
from __future__ import annotations

from typing import Any, Mapping

ENDED = frozenset({"canceled", "incomplete_expired"})
PAST_DUE, CANCELED = "past_due", "canceled"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def is_live(state: Mapping[str, Any] | None) -> bool:
    return bool(state) and state.get("status") not in ENDED


def mirror(stored: Mapping[str, Any] | None, incoming: Mapping[str, Any]) -> bool:
    """Whether ``incoming`` replaces ``stored``."""
    if not stored or not stored.get("id"):
        return True
    if stored.get("id") == incoming.get("id"):
        return _int(incoming.get("eventCreated")) >= _int(stored.get("eventCreated"))
    if not is_live(incoming):
        return False  # another subscription's end never hides the current one
    if not is_live(stored):
        return True
    return _int(incoming.get("created")) > _int(stored.get("created"))
