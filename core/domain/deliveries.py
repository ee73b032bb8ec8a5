"""Deliveries: one message to one endpoint, until the endpoint accepts it or it is dead-lettered.

A delivery's id is its endpoint's id and its message's id, so queuing a message twice for one
endpoint is the same delivery. Its ``body`` is fixed when it is queued: every attempt sends the
same bytes with the same ``webhook-id`` (only ``webhook-timestamp`` and the signatures change).

Rules:
- an endpoint gets its deliveries one at a time, oldest queued first (an account's in seq order):
  while the first is failing the others wait behind it;
- a 2xx answer delivers it; anything else, a timeout or no connection is a failure, retried after
  ``retry_delay`` (exponential: base, 2 × base, 4 × base …, capped), from the failure's time;
- a failure later than ``window`` after the delivery was queued (or replayed) dead-letters it,
  and the endpoint goes on with the next; a replay makes a dead letter (or a delivered one, to
  send it again) pending again, first in its endpoint's queue, with a new window.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

from core.domain.outbox import Message

PENDING, DELIVERED, DEAD_LETTERED = "pending", "delivered", "dead_lettered"
MAX_ERROR_LENGTH = 300


@dataclass(frozen=True)
class Delivery:
    id: str
    endpoint_id: str
    message_id: str  # the webhook-id header: the same on every attempt
    event_id: str  # the outbox event it came from
    user_id: str
    seq: int
    position: int  # an account's order (core/domain/outbox.py Message.position)
    type: str
    body: str
    queued_at: float
    status: str = PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    window_from: float | None = None  # the retry window starts here (queued_at until a replay)
    last_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    dead_lettered_at: float | None = None
    replays: int = 0
    replayed_by: str | None = None

    @property
    def key(self) -> str:
        return self.id

    def due(self, now: float) -> bool:
        return self.status == PENDING and self.next_attempt_at <= now

    def succeeded(self, now: float, status: int) -> "Delivery":
        return replace(self, status=DELIVERED, attempts=self.attempts + 1, last_attempt_at=now, last_status=status,
                       last_error=None, delivered_at=now)

    def failed(self, now: float, status: int | None, error: str, window: float, base: float,
               cap: float) -> "Delivery":
        """Pending again after its retry delay, or dead-lettered once its window has passed."""
        attempts = self.attempts + 1
        failed = replace(self, attempts=attempts, last_attempt_at=now, last_status=status,
                         last_error=error[:MAX_ERROR_LENGTH])
        start = self.queued_at if self.window_from is None else self.window_from
        if now - start >= window:
            return replace(failed, status=DEAD_LETTERED, dead_lettered_at=now)
        return replace(failed, next_attempt_at=now + retry_delay(attempts, base, cap))

    def replay(self, now: float, operator: str) -> "Delivery":
        return replace(self, status=PENDING, attempts=0, next_attempt_at=now, window_from=now, dead_lettered_at=None,
                       replays=self.replays + 1, replayed_by=operator)


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """After the n-th failed attempt: base × 2^(n-1), at most ``cap``."""
    return min(cap, base * 2 ** min(max(attempts - 1, 0), 60))


def delivery_id(endpoint_id: str, message_id: str) -> str:
    return f"{endpoint_id}_{message_id}"


def body_of(message: Message) -> str:
    return json.dumps(dict(message.payload), separators=(",", ":"), sort_keys=True)


def new_delivery(endpoint_id: str, message: Message, now: float) -> Delivery:
    return Delivery(delivery_id(endpoint_id, message.id), endpoint_id, message.id, message.event_id, message.user_id,
                    message.seq, message.position, message.type, body_of(message), now, next_attempt_at=now)
