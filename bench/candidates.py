"""Candidate changes to core/web/worker, measured by the benchmark without editing them.

These are experiments that back the recommendations in docs/BENCHMARKS.md, not
production code: the owners of core/, web/ and worker/ decide and write the real change.

    # web tier without Celery's task-sent event (one broker publish per webhook, not two)
    python -m bench.run --phases ingress --web-app 'bench.candidates:web_app_without_sent_event()'

    # worker whose credit is one atomic batched write instead of a read-modify-write transaction
    python -m bench.run --phases e2e,throughput,oneuser --worker-app bench.candidate_worker
"""
from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import firestore

from core import firestore_store as fs
from core.store import FULFILLED, CreditRequest, CreditResult


def web_app_without_sent_event():
    """web.app as shipped, except the producer's ``task_send_sent_event`` is off."""
    from core.bootstrap import bootstrap
    from web.app import create_app
    from broker.event_queue import CeleryEventQueue
    from broker.producer import create_producer

    deps = bootstrap()
    celery = create_producer(deps.settings)
    celery.conf.task_send_sent_event = False
    return create_app(deps, CeleryEventQueue(celery))


def credit_purchase_batched(self: fs.FirestoreLedgerStore, request: CreditRequest) -> CreditResult:
    """One commit, no read, no transaction lock.

    - the ledger entry ``purchase_{session}`` is written with ``create`` (precondition: it does
      not exist), so a second credit of the same session fails as a whole: exactly once;
    - the user's totals move by server-side ``Increment``s, so concurrent credits to one user
      do not conflict (no lock wait, no retry);
    - the purchase and the event record are set in the same atomic batch.
    What it gives up: ``balanceAfter`` in the ledger entry (the new balance comes back in the
    commit's transform results, after the entry is written).
    """
    purchase_ref = self._ref(fs.PURCHASES, request.session_id)
    user_ref = self._ref(fs.USERS, request.user_id)
    entry_ref = self._ref(fs.LEDGER, fs.purchase_entry_id(request.session_id))
    event_ref = self._ref(fs.EVENTS, request.event.event_id) if request.event.event_id else None
    batch = self.db.batch()
    batch.create(entry_ref, {
        "userId": request.user_id, "type": "purchase", "amount": request.tokens,
        "createdAt": firestore.SERVER_TIMESTAMP, "stripeEventId": request.event.event_id,
        "source": request.event.source, "checkoutSessionId": request.session_id,
        "paymentIntentId": request.payment_intent, "packageId": request.package_id,
        "amountPaid": request.amount_paid, "currency": request.currency,
    })
    user_fields = {name: firestore.Increment(0) for name in fs.TOTAL_FIELDS}
    user_fields.update({"tokenBalance": firestore.Increment(request.tokens),
                        "totalTokensPurchased": firestore.Increment(request.tokens),
                        "updatedAt": firestore.SERVER_TIMESTAMP})
    batch.set(user_ref, user_fields, merge=True)
    batch.set(purchase_ref, {
        "userId": request.user_id, "packageId": request.package_id, "tokens": request.tokens,
        "amountPaid": request.amount_paid, "currency": request.currency,
        "paymentIntentId": request.payment_intent, "status": FULFILLED, "reason": None,
        "ledgerEntryId": entry_ref.id, "fulfilledAt": firestore.SERVER_TIMESTAMP,
        "fulfilledBy": {"eventId": request.event.event_id, "eventType": request.event.event_type,
                        "source": request.event.source},
        "creditAttempts": 1, "updatedAt": firestore.SERVER_TIMESTAMP,
    }, merge=True)
    if event_ref is not None:
        batch.set(event_ref, fs._event_fields(request.event, status="processed", outcome="credited",
                                              sessionId=request.session_id, userId=request.user_id), merge=True)
    try:
        results = batch.commit()
    except gexc.AlreadyExists:
        if event_ref is not None:
            event_ref.set(fs._event_fields(request.event, status="processed", outcome="already_fulfilled",
                                           sessionId=request.session_id, userId=request.user_id), merge=True)
        return CreditResult(False, request.user_id, None, 1)
    transforms = sorted(user_fields)  # the client sends field transforms sorted by path
    values = results[1].transform_results
    balance = values[transforms.index("tokenBalance")].integer_value if len(values) == len(transforms) else None
    return CreditResult(True, request.user_id, balance, 1)
