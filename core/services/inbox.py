"""The sweeper: every event the inbox accepted is processed, even if its job was lost.

The web tier answers 200 once ``stripe_events/{id}`` holds the event (status ``received``, with
its payload and signature). The job it then publishes lives in Redis, which can lose it (a
restart without persistence, a failover, a retry that could not be published). So records still
``received`` after a short grace period are enqueued again, in bounded batches, oldest first:
on a schedule (beat, every ``INBOX_SWEEP_EVERY_SECONDS``), when a worker starts, and — with no
grace at all — when the broker's Redis comes back empty (its marker key is gone). A record swept
in the last grace period is skipped, so a slow backlog is not multiplied. Sweeping is safe to
repeat: the worker verifies each job again and every handler is idempotent.
"""
from __future__ import annotations

import logging
from collections import Counter

from core import metrics

log = logging.getLogger("tokenbank.inbox")
SWEEP_MARKER = "tb:inbox:broker-alive"  # in the broker's Redis: missing after it lost its data


def sweep(deps, queue, grace_seconds: float, limit: int = 500, broker=None) -> dict:
    """Enqueue again what is still ``received``; returns counts by outcome."""
    counts: Counter = Counter()
    now = deps.clock()
    if broker is not None and not broker.set(SWEEP_MARKER, "1", nx=False, get=True):
        grace_seconds = 0  # the broker came back empty: every queued job may be gone
        counts["broker_lost_data"] += 1
        log.warning("the broker's Redis lost its data: sweeping the whole inbox")
    for record in deps.store.received_events(now - grace_seconds, limit):
        swept_at = record.get("sweptAt")
        if grace_seconds and isinstance(swept_at, (int, float)) and now - swept_at < grace_seconds:
            counts["recently_swept"] += 1
            continue
        queue.enqueue_event(record["id"], record.get("type") or "", record.get("payload") or "",
                            record.get("signature") or "")
        deps.store.record_event(record["id"], {"sweptAt": now, "sweeps": int(record.get("sweeps") or 0) + 1})
        counts["requeued"] += 1
        metrics.INBOX_SWEPT.inc()
        log.info("inbox record enqueued again", extra={"event_id": record["id"], "event_type": record.get("type"),
                                                        "sweeps": int(record.get("sweeps") or 0) + 1})
    if counts["requeued"]:
        log.warning("inbox sweep enqueued %d event(s) whose job was not processed", counts["requeued"])
    return dict(counts)
