"""Delivery: an endpoint's queue, sent in order by one run at a time, retried, dead-lettered.

A run (the Celery task ``tokenbank.outbox.deliver``, one endpoint) holds the endpoint's lock
(core.ports.RunLock; a second run asked for meanwhile leaves a mark and returns) and sends
the endpoint's pending deliveries oldest first, each signed with the endpoint's valid secrets.
The outcome of each attempt is one transaction on the delivery (and the endpoint's state):
- a 2xx delivers it, and the run goes on with the next;
- a failure schedules its retry (core/domain/deliveries.py: exponential backoff) and stops the
  run: the messages behind it wait, so an account's events arrive in seq order; the retry is a
  countdown task when it is near, else the outbox sweep's, once the endpoint's ``retryAt`` passed;
- a failure after the retry window (``WEBHOOK_RETRY_WINDOW_SECONDS``, 3 days) dead-letters the
  delivery, with a ``webhook_dead_letter`` alert, and the run goes on with the next.
Each run lasts at most ``RUN_SECONDS`` (then it asks for its own continuation) and every HTTP call
is bounded by ``WEBHOOK_TIMEOUT_SECONDS``, so a slow endpoint holds one worker process briefly and
never delays another endpoint's run.
"""
from __future__ import annotations

import logging
import time

from core import metrics
from core.domain.deliveries import DEAD_LETTERED, DELIVERED, PENDING, Delivery
from core.domain.records import Alert
from core.domain.webhook_endpoints import Endpoint

log = logging.getLogger("tokenbank.deliveries")
BATCH = 20
RUN_SECONDS = 20.0
SKIPPED = "skipped"
MAX_COUNTDOWN_SECONDS = 60.0  # a retry further away waits for the sweep (broker countdowns stay short)


def deliver_endpoint(deps, queue, endpoint_id: str) -> dict:
    key = f"endpoint:{endpoint_id}"
    token = deps.run_lock.acquire(key)
    if token is None:
        deps.run_lock.note_kick(key)
        return {"status": "busy"}
    try:
        return _run(deps, queue, endpoint_id, time.monotonic() + RUN_SECONDS)
    finally:
        deps.run_lock.release(key, token)


def _run(deps, queue, endpoint_id: str, deadline: float) -> dict:
    counts = {DELIVERED: 0, "failed": 0, DEAD_LETTERED: 0}
    while True:
        endpoint = deps.store.get_endpoint(endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return {"status": "disabled", **counts}
        batch = deps.store.pending_deliveries(endpoint_id, BATCH)
        if not batch:
            if deps.run_lock.take_kick(f"endpoint:{endpoint_id}"):
                continue  # something was queued while this run held the lock
            return {"status": "idle", **counts}
        for delivery in batch:
            now = deps.clock()
            if not delivery.due(now):  # its retry is already asked for (a countdown, or the sweep at retryAt)
                return {"status": "waiting", "retryAt": delivery.next_attempt_at, **counts}
            if time.monotonic() > deadline:
                queue.request_delivery(endpoint_id)  # a fresh task goes on
                return {"status": "continued", **counts}
            outcome, after = attempt(deps, endpoint, delivery)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == "failed":
                _retry_later(queue, endpoint_id, after.next_attempt_at - deps.clock())
                return {"status": "waiting", "retryAt": after.next_attempt_at, **counts}
            if outcome == SKIPPED:
                break  # the queue changed under this run (a replay): read it again


def _retry_later(queue, endpoint_id: str, delay: float) -> None:
    if delay <= MAX_COUNTDOWN_SECONDS:
        queue.request_delivery(endpoint_id, countdown=max(0.0, delay))


def attempt(deps, endpoint: Endpoint, delivery: Delivery) -> tuple[str, Delivery]:
    """Send one delivery and record the outcome: ``delivered``, ``failed`` (retry later) or ``dead_lettered``."""
    settings = deps.settings
    now = deps.clock()
    sent = deps.sender.send(endpoint.url, endpoint.signing_secrets(now), delivery.message_id, delivery.body, int(now),
                            settings.webhook_timeout_seconds)
    metrics.WEBHOOK_DELIVERY_SECONDS.observe(sent.seconds)
    done_at = deps.clock()

    def record(tx) -> tuple[str, Delivery]:
        current, state = tx.get_all((Delivery, delivery.id), (Endpoint, endpoint.id))
        if current is None or current.status != PENDING or current.attempts != delivery.attempts:
            return SKIPPED, current  # replayed or changed meanwhile: this attempt's outcome is moot
        if sent.ok:
            after = current.succeeded(done_at, sent.status)
            outcome = DELIVERED
            state = state.healthy() if state is not None and state.failing_since is not None else state
        else:
            after = current.failed(done_at, sent.status, sent.error or "failed", settings.webhook_retry_window_seconds,
                                   settings.webhook_retry_base_seconds, settings.webhook_retry_max_seconds)
            outcome = "failed" if after.status == PENDING else DEAD_LETTERED
            if state is not None:
                state = state.failing(done_at, after.next_attempt_at if outcome == "failed" else None,
                                      after.last_error or "failed")
            if outcome == DEAD_LETTERED:
                tx.put(Alert(f"webhook_dead_letter_{after.id}", "webhook_dead_letter", after.user_id, {
                    "endpointId": after.endpoint_id, "deliveryId": after.id, "messageId": after.message_id,
                    "type": after.type, "attempts": after.attempts, "lastStatus": after.last_status,
                    "lastError": after.last_error}))
        tx.put(after)
        if state is not None:
            tx.put(state)
        return outcome, after

    outcome, after = deps.uow.run(record)
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    (log.info if outcome == DELIVERED else log.warning)(
        "webhook %s", outcome, extra={"endpoint_id": endpoint.id, "delivery_id": delivery.id,
                                      "message_id": delivery.message_id, "user_id": delivery.user_id,
                                      "status": sent.status, "error": sent.error, "attempt": delivery.attempts + 1})
    return outcome, after
