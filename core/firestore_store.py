"""LedgerStore on Cloud Firestore: each money change is one transaction.

Collections (see docs/DATA_MODEL.md): users, transactions (the append-only ledger),
purchases, stripe_events, security_alerts.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from core.errors import TransientError
from core.ledger import total_delta
from core.store import (
    FULFILLED, REPLACEABLE_BY, AccountFrozen, Alert, CreditRequest, CreditResult, EntryRequest, EntryResult,
    InsufficientFunds, InvalidCursor, ReversalRequest, ReversalResult, StatusChange,
)

USERS, LEDGER, PURCHASES, EVENTS, ALERTS = "users", "transactions", "purchases", "stripe_events", "security_alerts"
DISPUTES, OPS_LOG = "disputes", "ops_log"
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
            purchase, user = _read_pair(tx, purchase_ref, user_ref)
            if _field(purchase, "status") == FULFILLED:
                if event_ref is not None:
                    tx.set(event_ref, _event_fields(request.event, status="processed", outcome="already_fulfilled",
                                                    sessionId=request.session_id, userId=request.user_id), merge=True)
                return CreditResult(False, _field(purchase, "userId"), None, attempts)
            user_after = _user_after(_totals(user), "purchase", request.tokens)
            balance_after = user_after["tokenBalance"]
            tx.set(user_ref, {**user_after, "updatedAt": firestore.SERVER_TIMESTAMP}, merge=True)
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

    def post_entry(self, request: EntryRequest) -> EntryResult:
        user_ref = self._ref(USERS, request.user_id)
        entry_ref = self._ref(LEDGER, request.entry_id)

        @firestore.transactional
        def post(tx: firestore.Transaction) -> EntryResult:
            user, entry = _read_pair(tx, user_ref, entry_ref)
            if entry.exists:
                data = entry.to_dict()
                conflict = request.request_hash is not None and data.get("requestHash") != request.request_hash
                return EntryResult(entry.id, False, data["amount"], data["balanceAfter"], conflict)
            totals = _totals(user)
            balance = totals["tokenBalance"]
            if request.require_funds:
                frozen = sorted((_field(user, "frozenBy") or {}).keys())
                if frozen:
                    raise AccountFrozen(frozen)
                if balance < -request.amount:
                    raise InsufficientFunds(balance, -request.amount)
            user_after = _user_after(totals, request.type, request.amount)
            balance_after = user_after["tokenBalance"]
            if balance_after < 0 and not request.allow_negative:
                raise InsufficientFunds(balance, -request.amount)
            tx.set(user_ref, {**user_after, "updatedAt": firestore.SERVER_TIMESTAMP}, merge=True)
            tx.create(entry_ref, {**request.fields, "userId": request.user_id, "type": request.type,
                                  "amount": request.amount, "balanceAfter": balance_after,
                                  "requestHash": request.request_hash, "createdAt": firestore.SERVER_TIMESTAMP})
            return EntryResult(entry_ref.id, True, request.amount, balance_after)

        return post(self.db.transaction(max_attempts=self.max_attempts))

    def reverse_purchase(self, request: ReversalRequest) -> ReversalResult:
        purchase_ref = self._ref(PURCHASES, request.session_id)
        entry_ref = self._ref(LEDGER, request.entry_id)

        @firestore.transactional
        def reverse(tx: firestore.Transaction) -> ReversalResult:
            purchase, entry = _read_pair(tx, purchase_ref, entry_ref)
            if _field(purchase, "status") != FULFILLED:
                # A refund or dispute can overtake the credit it reverses: try again later.
                raise TransientError(f"purchase {request.session_id} is not fulfilled yet")
            p = purchase.to_dict()
            user_id = p["userId"]
            user_ref = self._ref(USERS, user_id)
            user = user_ref.get(transaction=tx)
            if entry.exists:
                data = entry.to_dict()
                return ReversalResult(entry.id, data["amount"], data["balanceAfter"], user_id,
                                      int(_field(user, "debt") or 0))
            tokens, paid = int(p["tokens"]), int(p.get("amountPaid") or 0)
            refunded_tokens, reversed_tokens = int(p.get("refundedTokens") or 0), int(p.get("reversedTokens") or 0)
            remaining = tokens - refunded_tokens - reversed_tokens
            purchase_fields: dict[str, Any] = {"updatedAt": firestore.SERVER_TIMESTAMP}
            if request.type == "refund":
                cents = max(int(p.get("refundedCents") or 0), int(request.refunded_cents or 0))
                target = tokens if paid <= 0 or cents >= paid else tokens * cents // paid
                debit = max(0, min(target - refunded_tokens, remaining))
                purchase_fields.update(refundedCents=cents, refundedTokens=refunded_tokens + debit)
            else:
                debit = max(0, remaining)
                purchase_fields.update(reversedTokens=reversed_tokens + debit)
            user_fields: dict[str, Any] = {}
            if request.unfreeze:
                user_fields["frozenBy"] = {request.unfreeze: firestore.DELETE_FIELD}
            totals = _totals(user)
            result = ReversalResult(None, 0, totals["tokenBalance"], user_id, max(0, -totals["tokenBalance"]))
            if debit > 0:
                user_fields.update(_user_after(totals, request.type, -debit))
                balance_after = user_fields["tokenBalance"]
                tx.create(entry_ref, {**request.fields, "userId": user_id, "type": request.type, "amount": -debit,
                                      "balanceAfter": balance_after, "checkoutSessionId": request.session_id,
                                      "packageId": p.get("packageId"), "createdAt": firestore.SERVER_TIMESTAMP})
                result = ReversalResult(entry_ref.id, -debit, balance_after, user_id, max(0, -balance_after))
            if user_fields:
                tx.set(user_ref, {**user_fields, "updatedAt": firestore.SERVER_TIMESTAMP}, merge=True)
            tx.set(purchase_ref, purchase_fields, merge=True)
            return result

        return reverse(self.db.transaction(max_attempts=self.max_attempts))

    def apply_dispute(self, dispute_id: str, user_id: str, opened: bool, info: Mapping[str, Any]) -> bool:
        dispute_ref, user_ref = self._ref(DISPUTES, dispute_id), self._ref(USERS, user_id)

        @firestore.transactional
        def apply(tx: firestore.Transaction) -> bool:
            dispute = dispute_ref.get(transaction=tx)
            closed = bool(_field(dispute, "closed"))
            if opened and (closed or dispute.exists):
                return False  # already open (a redelivery), or closed before this event arrived
            if not opened and closed:
                return False
            record = {**info, "userId": user_id, "closed": not opened, "updatedAt": firestore.SERVER_TIMESTAMP,
                      ("openedAt" if opened else "closedAt"): firestore.SERVER_TIMESTAMP}
            tx.set(dispute_ref, record, merge=True)
            freeze = {**info, "since": firestore.SERVER_TIMESTAMP} if opened else firestore.DELETE_FIELD
            tx.set(user_ref, {"frozenBy": {dispute_id: freeze}, "updatedAt": firestore.SERVER_TIMESTAMP}, merge=True)
            return True

        return apply(self.db.transaction(max_attempts=self.max_attempts))

    def find_purchase_by_payment_intent(self, payment_intent: str) -> tuple[str, Mapping[str, Any]] | None:
        query = self.db.collection(PURCHASES).where(filter=FieldFilter("paymentIntentId", "==", payment_intent))
        for snap in query.limit(1).stream():
            return snap.id, snap.to_dict()
        return None

    def mirror_subscription(self, user_id: str, subscription: Mapping[str, Any], event_created: int) -> bool:
        user_ref = self._ref(USERS, user_id)

        @firestore.transactional
        def mirror(tx: firestore.Transaction) -> bool:
            stored = _field(user_ref.get(transaction=tx), "subscription") or {}
            if int(stored.get("eventCreated") or 0) > event_created:
                return False  # a newer event already applied: this one arrived late
            tx.set(user_ref, {"subscription": {**subscription, "eventCreated": event_created},
                              "updatedAt": firestore.SERVER_TIMESTAMP}, merge=True)
            return True

        return mirror(self.db.transaction(max_attempts=self.max_attempts))

    def iter_user_ids(self, batch_size: int):
        """Every users document id, fetched in pages of ``batch_size`` (ids only)."""
        last = None
        while True:
            query = self.db.collection(USERS).order_by("__name__").limit(batch_size).select([])
            if last is not None:
                query = query.start_after(last)
            page = list(query.stream())
            for snap in page:
                yield snap.id
            if len(page) < batch_size:
                return
            last = page[-1]

    def user_ledger(self, user_id: str) -> tuple[Mapping[str, Any] | None, list[dict], list[dict]]:
        user = self._ref(USERS, user_id).get().to_dict()
        entries = [{"id": s.id, **s.to_dict(), "_created": s.create_time, "_updated": s.update_time}
                   for s in self.db.collection(LEDGER).where(filter=FieldFilter("userId", "==", user_id)).stream()]
        purchases = [{"id": s.id, **s.to_dict()}
                     for s in self.db.collection(PURCHASES).where(filter=FieldFilter("userId", "==", user_id)).stream()]
        return user, entries, purchases

    def get_dispute(self, dispute_id: str) -> Mapping[str, Any] | None:
        return self._ref(DISPUTES, dispute_id).get().to_dict()

    def list_events(self, status: str, limit: int) -> list[dict]:
        query = self.db.collection(EVENTS).where(filter=FieldFilter("status", "==", status)).limit(limit)
        return [{"id": s.id, **s.to_dict()} for s in query.stream()]

    def get_event(self, event_id: str) -> Mapping[str, Any] | None:
        return self._ref(EVENTS, event_id).get().to_dict()

    def add_ops_log(self, fields: Mapping[str, Any]) -> None:
        self.db.collection(OPS_LOG).add({**fields, "createdAt": firestore.SERVER_TIMESTAMP})

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


def _read_pair(tx, first, second):
    """Two documents in one round trip inside a transaction, in the order asked."""
    snaps = {snap.reference.path: snap for snap in tx.get_all([first, second])}
    return snaps[first.path], snaps[second.path]


def _user_after(totals: dict[str, int], entry_type: str, amount: int) -> dict[str, int]:
    """The user's balance, totals and debt after one ledger entry of ``amount`` (core.ledger)."""
    total, delta = total_delta(entry_type, amount)
    balance_after = totals["tokenBalance"] + amount
    return {**totals, "tokenBalance": balance_after, total: totals[total] + delta, "debt": max(0, -balance_after)}


def _totals(user) -> dict[str, int]:
    data = user.to_dict() if user.exists else {}
    return {name: int(data.get(name) or 0) for name in TOTAL_FIELDS}


def _field(snap, name: str) -> Any:
    return (snap.to_dict() or {}).get(name) if snap.exists else None


def _alert_fields(alert: Alert) -> dict[str, Any]:
    return {"type": alert.type, "userId": alert.user_id, "details": dict(alert.details),
            "createdAt": firestore.SERVER_TIMESTAMP}
