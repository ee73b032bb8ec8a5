"""Reconciliation with Stripe: find what the webhooks missed, and what disagrees.

Lists, for the last ``hours`` (paginated, at most ``max_rps`` requests per second):
- the completed Checkout Sessions: every paid package session without a fulfilled purchase
  (a missed webhook) is handed to the same idempotent fulfilment (``request_fulfilment``);
  a plan's session is not a purchase (its tokens come with its invoices);
- the paid invoices: every plan invoice without a fulfilled payment (a lost ``invoice.paid``)
  is handed to ``request_invoice_fulfilment``, which credits its allowance once;
- the charges: a refund of a package or plan payment not applied yet is a finding;
- the disputes: one of tokenbank's charges that we have no record of, or whose open/closed
  state disagrees with ours (every status of the pinned API version), is a finding.
Each thing asked for is remembered for the window, so a second run enqueues nothing again.
Sessions that disagree with our records are findings too. Every outcome is counted.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from core import metrics, redis_keys
from core.domain.checkout import CheckoutSession, claimed_user_id
from core.domain.dispute import CLOSED_STATUSES
from core.domain.stripe_objects import invoice_subscription
from core.handlers.ownership import owner_of
from core.handlers.plans import CREDITED_BILLING_REASONS, is_plan_session
from core.services.inbox import INVOICE, SESSION, request_fulfilment

log = logging.getLogger("tokenbank.reconcile")


@dataclass
class ReconcileReport:
    counts: Counter = field(default_factory=Counter)
    findings: list[dict] = field(default_factory=list)
    enqueued: list[str] = field(default_factory=list)

    def find(self, kind: str, **details) -> None:
        metrics.RECONCILE_FINDINGS.labels(kind).inc()
        self.counts[kind] += 1
        self.findings.append({"kind": kind, **details})

    def as_dict(self) -> dict:
        return {"counts": dict(self.counts), "findings": self.findings, "enqueued": self.enqueued}


class RateLimiter:
    def __init__(self, per_second: float, clock=time.monotonic, sleep=time.sleep):
        self.interval, self.clock, self.sleep, self.next = 1.0 / per_second, clock, sleep, 0.0

    def wait(self) -> None:
        now = self.clock()
        if now < self.next:
            self.sleep(self.next - now)
            now = self.next
        self.next = now + self.interval


def _pages(list_call: Callable[[dict], Any], params: dict, limiter: RateLimiter) -> Iterator[dict]:
    after = None
    while True:
        limiter.wait()
        page = list_call({**params, "limit": 100, **({"starting_after": after} if after else {})}).to_dict()
        for item in page.get("data", []):
            yield item
        if not page.get("has_more") or not page.get("data"):
            return
        after = page["data"][-1]["id"]


def reconcile(deps, queue, hours: int = 72, max_rps: float = 20, on_progress=None) -> ReconcileReport:
    report = ReconcileReport()
    limiter = RateLimiter(max_rps)
    since = int(deps.clock()) - hours * 3600
    v1 = deps.stripe.v1
    for obj in _pages(v1.checkout.sessions.list, {"created": {"gte": since}, "status": "complete"}, limiter):
        report.counts["sessions_seen"] += 1
        if is_plan_session(obj):
            report.counts["plan_sessions"] += 1  # a subscription's tokens come with its invoices
        else:
            _session(deps, queue, CheckoutSession.from_stripe(obj), report, hours)
        if on_progress:
            on_progress(report)
    for invoice in _pages(v1.invoices.list, {"created": {"gte": since}, "status": "paid"}, limiter):
        _invoice(deps, queue, invoice, report, hours)
    for charge in _pages(v1.charges.list, {"created": {"gte": since}}, limiter):
        _charge(deps, charge, report)
    for dispute in _pages(v1.disputes.list, {"created": {"gte": since}}, limiter):
        _dispute(deps, dispute, report)
    log.info("reconciliation done", extra={"counts": dict(report.counts)})
    return report


def _session(deps, queue, session: CheckoutSession, report: ReconcileReport, hours: int) -> None:
    if not session.has_valid_id:
        report.find("invalid_session_id", sessionId=repr(session.id)[:100])
        return
    purchase = deps.store.get_purchase(session.id)
    status = (purchase or {}).get("status")
    paid = session.payment_status == "paid"
    if paid and status == "fulfilled":
        if purchase.get("userId") != claimed_user_id(session):
            report.find("user_disagrees", sessionId=session.id, ours=purchase.get("userId"),
                        stripe=claimed_user_id(session))
        else:
            report.counts["in_agreement"] += 1
        return
    if paid and status == "rejected":
        report.find("paid_but_rejected", sessionId=session.id, reason=purchase.get("reason"))
        return
    if not paid and status == "fulfilled":
        report.find("fulfilled_but_not_paid", sessionId=session.id, paymentStatus=session.payment_status)
        return
    if not paid:
        report.counts["unpaid_open"] += 1
        return
    # Paid, never fulfilled: a missed (or still queued) webhook. Ask once per window.
    marker = redis_keys.reconcile_requested(session.id)
    if not deps.redis.set(marker, "1", nx=True, ex=hours * 3600):
        report.counts["already_requested"] += 1
        return
    request_fulfilment(deps, queue, SESSION, session.id, "reconciliation")
    report.enqueued.append(session.id)
    report.find("missed_fulfilment", sessionId=session.id, userId=claimed_user_id(session))


def _invoice(deps, queue, invoice: dict, report: ReconcileReport, hours: int) -> None:
    report.counts["invoices_seen"] += 1
    sub_id, metadata = invoice_subscription(invoice)
    if not metadata.get("planId") or invoice.get("billing_reason") not in CREDITED_BILLING_REASONS:
        report.counts["not_a_plan_invoice"] += 1
        return
    invoice_id = invoice.get("id")
    if not isinstance(invoice_id, str) or not invoice_id:
        return
    payment = deps.store.get_purchase(invoice_id)
    if (payment or {}).get("status") == "fulfilled":
        report.counts["invoices_in_agreement"] += 1
        return
    if not deps.redis.set(redis_keys.reconcile_requested(invoice_id), "1", nx=True, ex=hours * 3600):
        report.counts["already_requested"] += 1
        return
    request_fulfilment(deps, queue, INVOICE, invoice_id, "reconciliation")
    report.enqueued.append(invoice_id)
    report.find("missed_allowance", invoiceId=invoice_id, userId=metadata.get("userId"), subscriptionId=sub_id)


def _charge(deps, charge: dict, report: ReconcileReport) -> None:
    refunded = charge.get("amount_refunded") or 0
    intent = charge.get("payment_intent")
    if not refunded or not isinstance(intent, str):
        return
    found = deps.store.find_purchase_by_payment_intent(intent)
    if found is None:
        return
    session_id, purchase = found
    if int(purchase.get("refundedCents") or 0) < refunded:
        report.find("refund_not_applied", sessionId=session_id, stripeRefunded=refunded,
                    oursRefunded=int(purchase.get("refundedCents") or 0))
    else:
        report.counts["refunds_in_agreement"] += 1


def _dispute(deps, dispute: dict, report: ReconcileReport) -> None:
    record = deps.store.get_dispute(dispute["id"]) if dispute.get("id") else None
    intent = dispute.get("payment_intent")
    if record is None and not (isinstance(intent, str) and owner_of(deps, intent)):
        report.counts["disputes_not_ours"] += 1  # a charge of something else the account sells
    elif record is None:
        report.find("dispute_unknown", disputeId=dispute.get("id"), status=dispute.get("status"))
    elif bool(record.get("closed")) != (dispute.get("status") in CLOSED_STATUSES):
        report.find("dispute_state_disagrees", disputeId=dispute["id"], stripe=dispute.get("status"),
                    oursClosed=bool(record.get("closed")))
    else:
        report.counts["disputes_in_agreement"] += 1
