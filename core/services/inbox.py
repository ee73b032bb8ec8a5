"""The sweeper: every event the inbox accepted is processed, even if its job was lost.

The web tier answers 200 once ``stripe_events/{id}`` holds the event (status ``received``, with
its payload and signature). The job it then publishes lives in Redis, which can lose it (a
restart without persistence, a failover, a retry that could not be published). So records still
``received`` after a short grace period are enqueued again, in bounded batches, oldest first:
on a schedule (beat, every ``INBOX_SWEEP_EVERY_SECONDS``), when a worker starts, and — with no
grace at all — when the broker's Redis comes back empty (its marker key is gone). A record swept
in the last grace period is skipped, so a slow backlog is not multiplied. Sweeping is safe to
repeat: the worker verifies each job again and every handler is idempotent.

The other jobs that carry money — the success page's and reconciliation's "fulfil this Checkout
Session / invoice from what Stripe says" — are made durable the same way (``request_fulfilment``:
``jobs/{id}`` status ``requested`` before the job is published; the worker marks it ``done`` or
``failed``), and the same sweep publishes again those still ``requested``. A replayed dead letter
goes back to ``received`` in the inbox, so it is swept too.
"""
from __future__ import annotations

import logging
from collections import Counter

from core import metrics
from core.domain.records import FINISHED

log = logging.getLogger("tokenbank.inbox")
SWEEP_MARKER = "tb:inbox:broker-alive"  # in the broker's Redis: missing after it lost its data


SESSION, INVOICE = "checkout_session", "invoice"


def job_id(kind: str, target: str) -> str:
    return f"fulfil_{kind}_{target}"


def request_fulfilment(deps, queue, kind: str, target: str, source: str) -> None:
    """Durable first (a Firestore failure propagates: the caller answers 503), then published;
    a broker that refuses loses nothing, the sweep publishes it."""
    deps.store.request_job(job_id(kind, target), {"kind": kind, "target": target, "source": source})
    try:
        _publish(queue, kind, target, source)
    except Exception as exc:
        log.warning("fulfilment request kept for the sweep: the broker refused it: %s", exc,
                    extra={"job": job_id(kind, target)})


def _publish(queue, kind: str, target: str, source: str) -> None:
    if kind == INVOICE:
        queue.request_invoice_fulfilment(target, source)
    else:
        queue.request_fulfilment(target, source)


def finished(deps, event_id: str) -> bool:
    """Whether the inbox already records what became of this event (a duplicate job is a no-op;
    a replay sets the record back to ``received`` first)."""
    return (deps.store.get_event(event_id) or {}).get("status") in FINISHED


def _due(records: list[dict], now: float, grace_seconds: float, counts: Counter) -> list[dict]:
    """The records not swept within the grace period (a slow backlog is not multiplied)."""
    due = []
    for record in records:
        swept_at = record.get("sweptAt")
        if grace_seconds and isinstance(swept_at, (int, float)) and now - swept_at < grace_seconds:
            counts["recently_swept"] += 1
        else:
            due.append(record)
    return due


def _swept(record: dict, now: float) -> dict:
    return {"sweptAt": now, "sweeps": int(record.get("sweeps") or 0) + 1}


def sweep(deps, queue, grace_seconds: float, limit: int = 500, broker=None) -> dict:
    """Enqueue again what is still ``received``; returns counts by outcome."""
    counts: Counter = Counter()
    now = deps.clock()
    if broker is not None and not broker.set(SWEEP_MARKER, "1", nx=False, get=True):
        grace_seconds = 0  # the broker came back empty: every queued job may be gone
        counts["broker_lost_data"] += 1
        log.warning("the broker's Redis lost its data: sweeping the whole inbox")
    for record in _due(deps.store.received_events(now - grace_seconds, limit), now, grace_seconds, counts):
        queue.enqueue_event(record["id"], record.get("type") or "", record.get("payload") or "",
                            record.get("signature") or "")
        deps.store.record_event(record["id"], _swept(record, now))
        counts["requeued"] += 1
        log.info("inbox record enqueued again", extra={"event_id": record["id"], "event_type": record.get("type"),
                                                        "sweeps": _swept(record, now)["sweeps"]})
    for job in _due(deps.store.requested_jobs(now - grace_seconds, limit), now, grace_seconds, counts):
        _publish(queue, job.get("kind") or SESSION, job.get("target") or "", job.get("source") or "sweep")
        deps.store.finish_job(job["id"], "requested", _swept(job, now))
        counts["jobs_requeued"] += 1
        log.info("fulfilment request published again", extra={"job": job["id"]})
    metrics.INBOX_SWEPT.inc(counts["requeued"] + counts["jobs_requeued"])
    if counts["requeued"] or counts["jobs_requeued"]:
        log.warning("inbox sweep enqueued %d event(s) and %d request(s) that were not processed",
                    counts["requeued"], counts["jobs_requeued"])
    return dict(counts)
