"""LedgerStore on Cloud Firestore: each money change is one transaction.

Collections (see docs/DATA_MODEL.md): users, transactions (the append-only ledger),
purchases, stripe_events, security_alerts.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from core.store import (
    FULFILLED, REPLACEABLE_BY, Alert, CreditRequest, CreditResult, InvalidCursor, StatusChange,
)

USERS, LEDGER, PURCHASES, EVENTS, ALERTS = "users", "transactions", "purchases", "stripe_events", "security_alerts"
TOTAL_FIELDS = ("tokenBalance", "totalTokensEarned", "totalTokensPurchased", "totalTokensSpent")
# Bounded per-call deadline for reads outside transactions (readiness probe).
PING_TIMEOUT_SECONDS = 3.0


log = logging.getLogger("tokenbank.firestore")


def bound_call_deadlines(db: firestore.Client, seconds: float) -> bool:
    """Cap every Firestore RPC (its own retries included) at ``seconds``.

    The client's defaults retry an unreachable backend for up to 60-300 s inside one call,
    and a call blocked in gRPC cannot be interrupted by a task's soft time limit. Failing
    fast hands the retry to the task's own policy (backoff, jitter, dead letter). The
    library keeps these defaults on private attributes; if they move, we warn and keep
    the library's defaults (the task's hard time limit still bounds the call, and the
    message is then requeued, not lost).
    """
    try:
        wrapped = db._firestore_api._transport._wrapped_methods
        for method in wrapped.values():
            if getattr(method, "_retry", None) is not None:
                method._retry = method._retry.with_deadline(seconds)
            method._timeout = seconds
        return True
    except AttributeError as exc:
        log.warning("could not bound Firestore call deadlines: %s", exc)
        return False


RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def cap_reconnect_backoff() -> None:
    """Reconnect to Firestore within 2 s of it coming back, not gRPC's default 120 s.

    After an outage a gRPC channel waits out an exponential reconnect backoff (up to two
    minutes) and fails every call fast meanwhile, so a recovered backend would look down
    long enough to exhaust the task's retries. The Firestore client builds its channels
    from two module-level option lists; this adds the backoff caps to both, before any
    client is created. Idempotent.
    """
    from google.cloud.firestore_v1 import base_client

    for options in (base_client._DEFAULT_CHANNEL_OPTIONS, base_client._GRPC_MSG_SIZE_OPTIONS):
        if not isinstance(options, list):
            log.warning("could not cap Firestore reconnect backoff: channel options are %s", type(options))
            continue
        for option in RECONNECT_OPTIONS:
            if option not in options:
                options.append(option)


def purchase_entry_id(session_id: str) -> str:
    return f"purchase_{session_id}"


def _event_fields(event, **extra) -> dict[str, Any]:
    fields = {"type": event.event_type, "updatedAt": firestore.SERVER_TIMESTAMP, **extra}
    return fields


class FirestoreLedgerStore:
    def __init__(self, db: firestore.Client, max_attempts: int = 5):
        self.db = db
        self.max_attempts = max_attempts

    def _ref(self, collection: str, doc_id: str):
        return self.db.collection(collection).document(doc_id)

    def credit_purchase(self, request: CreditRequest) -> CreditResult:
        purchase_ref = self._ref(PURCHASES, request.session_id)
        user_ref = self._ref(USERS, request.user_id)
        entry_ref = self._ref(LEDGER, purchase_entry_id(request.session_id))
        event_ref = self._ref(EVENTS, request.event.event_id) if request.event.event_id else None
        attempts = 0

        @firestore.transactional
        def credit(tx: firestore.Transaction) -> CreditResult:
            nonlocal attempts
            attempts += 1
            snaps = {snap.reference.path: snap for snap in tx.get_all([purchase_ref, user_ref])}
            purchase, user = snaps[purchase_ref.path], snaps[user_ref.path]
            if _field(purchase, "status") == FULFILLED:
                if event_ref is not None:
                    tx.set(event_ref, _event_fields(request.event, status="processed", outcome="already_fulfilled",
                                                    sessionId=request.session_id, userId=request.user_id), merge=True)
                return CreditResult(False, _field(purchase, "userId"), None, attempts)
            totals = {name: 0 for name in TOTAL_FIELDS}
            if user.exists:
                data = user.to_dict()
                totals.update({name: int(data.get(name) or 0) for name in TOTAL_FIELDS})
            balance_after = totals["tokenBalance"] + request.tokens
            tx.set(user_ref, {
                **totals,
                "tokenBalance": balance_after,
                "totalTokensPurchased": totals["totalTokensPurchased"] + request.tokens,
                "updatedAt": firestore.SERVER_TIMESTAMP,
            }, merge=True)
            tx.create(entry_ref, {
                "userId": request.user_id,
                "type": "purchase",
                "amount": request.tokens,
                "balanceAfter": balance_after,
                "createdAt": firestore.SERVER_TIMESTAMP,
                "stripeEventId": request.event.event_id,
                "source": request.event.source,
                "checkoutSessionId": request.session_id,
                "paymentIntentId": request.payment_intent,
                "packageId": request.package_id,
                "amountPaid": request.amount_paid,
                "currency": request.currency,
            })
            purchase_fields = {
                "userId": request.user_id,
                "packageId": request.package_id,
                "tokens": request.tokens,
                "amountPaid": request.amount_paid,
                "currency": request.currency,
                "paymentIntentId": request.payment_intent,
                "status": FULFILLED,
                "reason": None,
                "ledgerEntryId": entry_ref.id,
                "fulfilledAt": firestore.SERVER_TIMESTAMP,
                "fulfilledBy": {"eventId": request.event.event_id, "eventType": request.event.event_type,
                                "source": request.event.source},
                "creditAttempts": attempts,
                "updatedAt": firestore.SERVER_TIMESTAMP,
            }
            if not purchase.exists:
                purchase_fields["createdAt"] = firestore.SERVER_TIMESTAMP
            tx.set(purchase_ref, purchase_fields, merge=True)
            if event_ref is not None:
                tx.set(event_ref, _event_fields(request.event, status="processed", outcome="credited",
                                                sessionId=request.session_id, userId=request.user_id), merge=True)
            return CreditResult(True, request.user_id, balance_after, attempts)

        return credit(self.db.transaction(max_attempts=self.max_attempts))

    def change_purchase_status(self, change: StatusChange, alert: Alert | None = None) -> bool:
        purchase_ref = self._ref(PURCHASES, change.session_id)
        event_ref = self._ref(EVENTS, change.event.event_id) if change.event.event_id else None

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            snap = purchase_ref.get(transaction=tx)
            current = _field(snap, "status")
            allowed = current in REPLACEABLE_BY[change.status]
            if allowed:
                fields: dict[str, Any] = {
                    "status": change.status,
                    "reason": change.reason,
                    "detail": change.detail,
                    "updatedAt": firestore.SERVER_TIMESTAMP,
                    f"{change.status}At": firestore.SERVER_TIMESTAMP,
                    "lastEvent": {"eventId": change.event.event_id, "eventType": change.event.event_type,
                                  "source": change.event.source},
                }
                if change.user_id:
                    fields["userId"] = change.user_id
                if change.package_id:
                    fields["packageId"] = change.package_id
                if not snap.exists:
                    fields["createdAt"] = firestore.SERVER_TIMESTAMP
                tx.set(purchase_ref, fields, merge=True)
                if alert is not None:
                    tx.set(self._ref(ALERTS, alert.id), _alert_fields(alert))
            if event_ref is not None:
                outcome = change.status if allowed else f"{change.status}_skipped_purchase_is_{current}"
                tx.set(event_ref, _event_fields(change.event, status="processed", outcome=outcome,
                                                sessionId=change.session_id, userId=change.user_id), merge=True)
            return allowed

        return apply(self.db.transaction(max_attempts=self.max_attempts))

    def record_event(self, event_id: str, fields: Mapping[str, Any], alert: Alert | None = None) -> None:
        record = {**fields, "updatedAt": firestore.SERVER_TIMESTAMP}
        if alert is None:
            self._ref(EVENTS, event_id).set(record, merge=True)
            return
        batch = self.db.batch()
        batch.set(self._ref(EVENTS, event_id), record, merge=True)
        batch.set(self._ref(ALERTS, alert.id), _alert_fields(alert))
        batch.commit()

    def add_alert(self, alert: Alert) -> None:
        self._ref(ALERTS, alert.id).set(_alert_fields(alert))

    def get_user(self, user_id: str) -> Mapping[str, Any] | None:
        return self._ref(USERS, user_id).get().to_dict()

    def get_purchase(self, session_id: str) -> Mapping[str, Any] | None:
        return self._ref(PURCHASES, session_id).get().to_dict()

    def list_entries(self, user_id: str, limit: int, after_id: str | None) -> tuple[list[dict], str | None]:
        query = (self.db.collection(LEDGER).where(filter=FieldFilter("userId", "==", user_id))
                 .order_by("createdAt", direction=firestore.Query.DESCENDING)
                 .order_by("__name__", direction=firestore.Query.DESCENDING))
        if after_id is not None:
            cursor = self._ref(LEDGER, after_id).get()
            if not cursor.exists or cursor.get("userId") != user_id:
                raise InvalidCursor("cursor is not one of this user's ledger entries")
            query = query.start_after(cursor)
        snaps = list(query.limit(limit + 1).stream())
        page = [{"id": snap.id, **snap.to_dict()} for snap in snaps[:limit]]
        return page, (page[-1]["id"] if len(snaps) > limit else None)

    def ping(self) -> None:
        self._ref("_health", "ping").get(timeout=PING_TIMEOUT_SECONDS, retry=None)


def _field(snap, name: str) -> Any:
    return (snap.to_dict() or {}).get(name) if snap.exists else None


def _alert_fields(alert: Alert) -> dict[str, Any]:
    return {"type": alert.type, "userId": alert.user_id, "details": dict(alert.details),
            "createdAt": firestore.SERVER_TIMESTAMP}
