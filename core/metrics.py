"""Prometheus metrics: one definition each, incremented where the thing happens.

Web (gunicorn) and worker (prefork) run several processes: with PROMETHEUS_MULTIPROC_DIR
set, every process writes its samples there and ``scrape()`` merges them (prometheus_client's
multiprocess mode). Without it (tests, one process) the default registry is used.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess
from prometheus_client import REGISTRY

WEBHOOKS = Counter("tokenbank_webhooks_received_total", "Stripe webhook deliveries by event type and outcome",
                   ["type", "outcome"])
SIGNATURE_FAILURES = Counter("tokenbank_webhook_signature_failures_total",
                             "Webhook deliveries refused before parsing (signature, timestamp, size, body)",
                             ["reason"])
ENQUEUE_FAILURES = Counter("tokenbank_enqueue_failures_total", "Verified events the broker did not accept (503)")
CREDITS = Counter("tokenbank_credits_total", "Purchases credited, by the path that credited them", ["source"])
CREDITED_TOKENS = Counter("tokenbank_credited_tokens_total", "Tokens credited by purchases")
REJECTIONS = Counter("tokenbank_purchase_rejections_total", "Paid sessions rejected by validation", ["reason"])
RATE_LIMITED = Counter("tokenbank_rate_limit_refusals_total", "Checkouts refused by the purchase gate")
VELOCITY_ALERTS = Counter("tokenbank_velocity_alerts_total", "Paid purchases over the velocity limit (credited)")
TASK_SECONDS = Histogram("tokenbank_task_duration_seconds", "Task run time by task and result",
                         ["task", "result"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
TASK_RETRIES = Counter("tokenbank_task_retries_total", "Transient failures retried, by task", ["task"])
DEAD_LETTERS = Counter("tokenbank_dead_letters_total", "Events dead-lettered after the last try", ["store"])
INBOX_SWEPT = Counter("tokenbank_inbox_swept_total", "Inbox records still received after the grace period, enqueued again")
UNVERIFIED_JOBS = Counter("tokenbank_unverified_jobs_total",
                          "Stripe event jobs the worker refused: signature or ids not verified", ["reason"])
RECONCILE_FINDINGS = Counter("tokenbank_reconciliation_findings_total", "Reconciliation findings by kind", ["kind"])
AUDIT_VIOLATIONS = Counter("tokenbank_audit_violations_total", "Ledger audit violations by check", ["check"])
WEBHOOK_TO_CREDIT = Histogram("tokenbank_webhook_to_credit_seconds",
                              "From the Stripe event's creation to the committed credit",
                              buckets=(.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 900))
SPENDS = Counter("tokenbank_spends_total", "Spend requests by outcome", ["outcome"])


def scrape() -> tuple[bytes, str]:
    """The exposition text of this process group, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


ACCOUNT_BATCH_SIZE = Histogram("tokenbank_account_batch_size", "Requests on one account committed in one transaction",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
TRANSACTION_RETRIES = Counter("tokenbank_transaction_retries_total",
                              "Account batch transactions run again on contention (attempts - 1)")


def account_batch(size: int, attempts: int) -> None:
    """``AccountBatcher``'s default ``on_batch``: its size, and the retries it took."""
    ACCOUNT_BATCH_SIZE.observe(size)
    if attempts > 1:
        TRANSACTION_RETRIES.inc(attempts - 1)

HOLD_OPERATIONS = Counter("tokenbank_hold_operations_total",
                          "Hold operations by operation (place, capture, release, extend) and outcome",
                          ["operation", "outcome"])

OUTBOX_KICK_FAILURES = Counter("tokenbank_outbox_kick_failures_total",
                               "Fan-out requests after a commit the broker did not take (the sweep fans out instead)")
OUTBOX_QUEUED = Counter("tokenbank_outbox_messages_queued_total", "Deliveries queued for webhook endpoints")
WEBHOOK_DELIVERIES = Counter("tokenbank_webhook_deliveries_total",
                             "Attempts to deliver a message to an endpoint, by outcome (delivered, failed, "
                             "dead_lettered)", ["outcome"])
WEBHOOK_DELIVERY_SECONDS = Histogram("tokenbank_webhook_delivery_seconds", "One delivery attempt's HTTP round trip",
                                     buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
