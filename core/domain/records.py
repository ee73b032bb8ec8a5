"""Records written beside money changes: what became of a Stripe event, and alerts.

An event's record is written in the same transaction as the change it caused, so a record
that says ``processed`` always has its change, and a change always has its record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

RECEIVED, PROCESSED, IGNORED, REJECTED, DEAD_LETTERED = "received", "processed", "ignored", "rejected", "dead_lettered"
FINISHED = (PROCESSED, IGNORED, REJECTED, DEAD_LETTERED)


@dataclass(frozen=True)
class EventRecord:
    id: str
    type: str
    status: str
    outcome: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)  # userId, sessionId, reason...

    @property
    def key(self) -> str:
        return self.id


@dataclass(frozen=True)
class Alert:
    id: str
    type: str
    user_id: str | None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.id


@dataclass(frozen=True)
class EventRef:
    """The Stripe event (or other caller) on whose behalf a change is made."""
    event_id: str | None
    event_type: str
    source: str = "webhook"  # webhook | success_page | reconciliation | replay
    created: int | None = None  # the Stripe event's creation time (for webhook-to-credit latency)

    def refs(self) -> dict[str, Any]:
        return {"stripeEventId": self.event_id, "source": self.source}

    def record(self, status: str, outcome: str | None, **fields: Any) -> EventRecord | None:
        if not self.event_id:
            return None
        return EventRecord(self.event_id, self.event_type, status, outcome,
                           {k: v for k, v in fields.items() if v is not None})
