"""Domain values as Firestore documents, and a transaction view that writes only what changed.

``DocumentTx`` implements the ``core.ports.Tx`` port over any backend that can read
documents by path inside a transaction and set or create them at commit: Firestore
(core/adapters/firestore_uow.py) and the unit tests' dict. It holds no money rule: it maps
values to documents (one codec per type, below), buffers writes until the work returns,
and writes only the fields that differ from what it read (``merge`` on exactly those
fields, so fields the domain does not own — a user's profile, an inbox record's payload —
stay as they are). A value put without being read (an event record) gets ``updatedAt`` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from core.domain.account import Account
from core.domain.dispute import Dispute
from core.domain.holds import Hold
from core.domain.ledger import Entry
from core.domain.lots import Lot
from core.adapters import outbox_documents as outbox
from core.domain.deliveries import Delivery
from core.domain.outbox import AccountEvent, OutboxCursor
from core.domain.webhook_endpoints import Endpoint, Subscriptions
from core.domain.payment import PACKAGE, Payment, PaymentLink
from core.domain.records import Alert, EventRecord

NOW = object()  # the store's own time at commit (Firestore's SERVER_TIMESTAMP)


@dataclass(frozen=True)
class Codec:
    collection: str
    to_doc: Callable[[Any], dict]
    from_doc: Callable[[str, Mapping[str, Any]], Any]
    companions: Callable[[Any], list] = lambda value: []  # other values written with this one


def _int(doc: Mapping[str, Any], name: str) -> int:
    return int(doc.get(name) or 0)


_LOT_FIELDS = (("source", "source"), ("amount", "amount"), ("remaining", "remaining"), ("createdAt", "created_at"),
               ("expiresAt", "expires_at"), ("costCents", "cost_cents"), ("currency", "currency"),
               ("paymentId", "payment_id"), ("planId", "plan_id"), ("rolloverCap", "rollover_cap"),
               ("rolledOver", "rolled_over"), ("expired", "expired"), ("expiringNotified", "expiring_notified"),
               ("migrated", "migrated"), ("migratedConsumed", "migrated_consumed"))


def _lot_doc(lot: Lot) -> dict:
    return {"userId": lot.user_id, **{name: getattr(lot, attr) for name, attr in _LOT_FIELDS}, "open": lot.open}


def _lot(key: str, doc: Mapping[str, Any]) -> Lot:
    return Lot(key, doc.get("userId") or "", **{attr: doc.get(name) for name, attr in _LOT_FIELDS
                                               if doc.get(name) is not None})


def _account_doc(a: Account) -> dict:
    doc = {"tokenBalance": a.balance, "totalTokensPurchased": a.purchased, "totalTokensEarned": a.earned,
           "totalTokensSpent": a.spent, "totalTokensExpired": a.expired, "debt": a.debt,
           "frozenBy": dict(a.frozen_by), "lots": {k: _lot_doc(v) for k, v in a.lots.items()},
           "holds": {k: dict(v) for k, v in a.holds.items()}, "eventSeq": a.seq}
    if a.subscription is not None:
        doc["subscription"] = dict(a.subscription)
    return doc


def _account(key: str, doc: Mapping[str, Any]) -> Account:
    return Account(key, _int(doc, "tokenBalance"), _int(doc, "totalTokensPurchased"), _int(doc, "totalTokensEarned"),
                   _int(doc, "totalTokensSpent"), dict(doc.get("frozenBy") or {}), doc.get("subscription"), True,
                   _int(doc, "totalTokensExpired"),
                   {k: _lot(k, v) for k, v in (doc.get("lots") or {}).items()},
                   {k: dict(v) for k, v in (doc.get("holds") or {}).items()}, seq=_int(doc, "eventSeq"))


_HOLD_FIELDS = (("amount", "amount"), ("expiresAt", "expires_at"), ("placedAt", "created_at"),
                ("idempotencyKey", "idempotency_key"), ("requestHash", "request_hash"), ("reason", "reason"),
                ("actor", "actor"), ("status", "status"), ("captured", "captured"), ("released", "released"),
                ("entryId", "entry_id"), ("captureKey", "capture_key"), ("captureHash", "capture_hash"))


def _hold_doc(h: Hold) -> dict:
    return {"userId": h.user_id, **{name: getattr(h, attr) for name, attr in _HOLD_FIELDS},
            "history": [dict(step) for step in h.history]}


def _hold(key: str, doc: Mapping[str, Any]) -> Hold:
    return Hold(key, doc.get("userId") or "", **{attr: doc.get(name) for name, attr in _HOLD_FIELDS
                                                if doc.get(name) is not None},
                history=tuple(dict(step) for step in doc.get("history") or ()))


def _entry_doc(e: Entry) -> dict:
    return {**e.refs, "userId": e.user_id, "type": e.type, "amount": e.amount, "balanceAfter": e.balance_after,
            "requestHash": e.request_hash}


_ENTRY_OWN = ("userId", "type", "amount", "balanceAfter", "requestHash", "createdAt")


def _entry(key: str, doc: Mapping[str, Any]) -> Entry:
    return Entry(key, doc["userId"], doc["type"], doc["amount"], doc["balanceAfter"],
                 {k: v for k, v in doc.items() if k not in _ENTRY_OWN}, doc.get("requestHash"))


_PAYMENT_OWN = ("userId", "kind", "status", "packageId", "planId", "tokens", "amountPaid", "currency",
                "paymentIntentId", "ledgerEntryId", "refundedCents", "refundedTokens", "reversedTokens", "reason",
                "detail")


def _payment_doc(p: Payment) -> dict:
    return {**p.info, "userId": p.user_id, "kind": p.kind, "status": p.status,
            ("packageId" if p.kind == PACKAGE else "planId"): p.item_id, "tokens": p.tokens,
            "amountPaid": p.amount_paid, "currency": p.currency, "paymentIntentId": p.payment_intent,
            "ledgerEntryId": p.entry_id, "refundedCents": p.refunded_cents, "refundedTokens": p.refunded_tokens,
            "reversedTokens": p.reversed_tokens, "reason": p.reason, "detail": p.detail}


def _payment(key: str, doc: Mapping[str, Any]) -> Payment:
    kind = doc.get("kind") or PACKAGE
    return Payment(key, kind, doc.get("userId"), doc.get("status"),
                   doc.get("packageId" if kind == PACKAGE else "planId"), _int(doc, "tokens"),
                   _int(doc, "amountPaid"), doc.get("currency"), doc.get("paymentIntentId"), doc.get("ledgerEntryId"),
                   _int(doc, "refundedCents"), _int(doc, "refundedTokens"), _int(doc, "reversedTokens"),
                   doc.get("reason"), doc.get("detail"),
                   {k: v for k, v in doc.items() if k not in _PAYMENT_OWN})


def _link_doc(link: PaymentLink) -> dict:
    return {"paymentId": link.payment_id, "userId": link.user_id, "parkedRefundCents": link.parked_refund_cents,
            "parkedRefundRefs": dict(link.parked_refund_refs), "parkedDisputes": dict(link.parked_disputes)}


def _link(key: str, doc: Mapping[str, Any]) -> PaymentLink:
    return PaymentLink(key, doc.get("paymentId"), doc.get("userId"), _int(doc, "parkedRefundCents"),
                       dict(doc.get("parkedRefundRefs") or {}), dict(doc.get("parkedDisputes") or {}))


def _dispute_doc(d: Dispute) -> dict:
    return {**d.info, "userId": d.user_id, "paymentIntentId": d.payment_intent, "status": d.status,
            "closed": d.closed}


def _dispute(key: str, doc: Mapping[str, Any]) -> Dispute:
    own = ("userId", "paymentIntentId", "status", "closed")
    return Dispute(key, doc.get("userId"), doc.get("paymentIntentId"), doc.get("status"), bool(doc.get("closed")),
                   {k: v for k, v in doc.items() if k not in own})


def _event_doc(r: EventRecord) -> dict:
    return {**r.fields, "type": r.type, "status": r.status, "outcome": r.outcome}


def _event(key: str, doc: Mapping[str, Any]) -> EventRecord:
    own = ("type", "status", "outcome")
    return EventRecord(key, doc.get("type") or "", doc.get("status") or "", doc.get("outcome"),
                       {k: v for k, v in doc.items() if k not in own})


def _alert_doc(a: Alert) -> dict:
    return {"type": a.type, "userId": a.user_id, "details": dict(a.details)}


def _alert(key: str, doc: Mapping[str, Any]) -> Alert:
    return Alert(key, doc.get("type") or "", doc.get("userId"), dict(doc.get("details") or {}))


CODECS: dict[type, Codec] = {
    Account: Codec("users", _account_doc, _account, lambda a: [*a.changed_lots.values(), *a.events]),
    AccountEvent: Codec("outbox", outbox.event_doc, outbox.event),
    OutboxCursor: Codec("outbox_cursors", outbox.cursor_doc, outbox.cursor),
    Delivery: Codec("deliveries", outbox.delivery_doc, outbox.delivery),
    Endpoint: Codec("webhook_endpoints", outbox.endpoint_doc, outbox.endpoint),
    Subscriptions: Codec("webhook_subscriptions", outbox.subscriptions_doc, outbox.subscriptions),
    Lot: Codec("lots", _lot_doc, _lot),
    Hold: Codec("holds", _hold_doc, _hold),
    Entry: Codec("transactions", _entry_doc, _entry),
    Payment: Codec("purchases", _payment_doc, _payment),
    PaymentLink: Codec("payment_intents", _link_doc, _link),
    Dispute: Codec("disputes", _dispute_doc, _dispute),
    EventRecord: Codec("stripe_events", _event_doc, _event),
    Alert: Codec("security_alerts", _alert_doc, _alert),
}
# Documents whose creation time and last change the store stamps (entries: createdAt only).
_UPDATED = {"users", "purchases", "payment_intents", "disputes", "stripe_events", "lots", "holds", "deliveries",
            "webhook_endpoints"}


class DocumentBackend(Protocol):
    """The few operations a document store's transaction offers."""

    def read(self, paths: list[tuple[str, str]]) -> list[Mapping[str, Any] | None]: ...

    def set(self, path: tuple[str, str], fields: dict, merge: list[str]) -> None: ...

    def create(self, path: tuple[str, str], fields: dict) -> None: ...


class DocumentTx:
    """``core.ports.Tx`` over a DocumentBackend: reads now, writes at ``flush``."""

    def __init__(self, backend: DocumentBackend, attempt: int = 1):
        self.backend = backend
        self.attempt = attempt
        self._read: dict[tuple[type, str], dict | None] = {}  # documents as read
        self._puts: dict[tuple[type, str], Any] = {}
        self._adds: dict[tuple[type, str], Any] = {}

    def get(self, kind: type, key: str) -> Any:
        return self.get_all((kind, key))[0]

    def get_all(self, *wanted: tuple[type, str]) -> list[Any]:
        missing = [w for w in dict.fromkeys(wanted) if w not in self._read and w not in self._puts
                   and w not in self._adds]
        if missing:
            docs = self.backend.read([(CODECS[kind].collection, key) for kind, key in missing])
            for item, doc in zip(missing, docs):
                self._read[item] = dict(doc) if doc is not None else None
        return [self._value(kind, key) for kind, key in wanted]

    def _value(self, kind: type, key: str) -> Any:
        item = (kind, key)
        if item in self._puts or item in self._adds:
            return self._puts.get(item, self._adds.get(item))
        doc = self._read.get(item)
        return None if doc is None else CODECS[kind].from_doc(key, doc)

    def put(self, value: Any) -> None:
        self._puts[(type(value), value.key)] = value
        for companion in CODECS[type(value)].companions(value):
            self.put(companion)

    def add(self, value: Any) -> None:
        item = (type(value), value.key)
        if item in self._adds:
            raise ValueError(f"{value.key} added twice in one unit of work")
        self._adds[item] = value

    def emitted(self) -> dict[str, int]:
        """The accounts whose new outgoing events this unit of work writes, each with its last seq
        (their fan-out is kicked after commit)."""
        last: dict[str, int] = {}
        for (kind, _), v in self._puts.items():
            if kind is AccountEvent and not v.dispatched:
                last[v.user_id] = max(v.seq, last.get(v.user_id, 0))
        return last

    def flush(self) -> None:
        for (kind, key), value in self._adds.items():
            codec = CODECS[kind]
            self.backend.create((codec.collection, key), {**codec.to_doc(value), "createdAt": NOW})
        for (kind, key), value in self._puts.items():
            codec = CODECS[kind]
            before = self._read.get((kind, key))
            doc = codec.to_doc(value)
            if before is not None:
                old = codec.to_doc(codec.from_doc(key, before))
                doc = {k: v for k, v in doc.items() if old.get(k, _ABSENT) != v}
                if not doc:
                    continue
            stamps = {}
            if codec.collection in _UPDATED:
                stamps["updatedAt"] = NOW
                if before is None and (kind, key) in self._read:  # read, and known not to exist
                    stamps["createdAt"] = NOW
            elif kind is Alert and before is None:  # as written outside a transaction (the dashboard's 24 h)
                stamps["createdAt"] = NOW
            if codec is CODECS[Payment] and (before is None or before.get("status") != value.status) and value.status:
                stamps[f"{value.status}At"] = NOW
            fields = {**doc, **stamps}
            self.backend.set((codec.collection, key), fields, list(fields))


_ABSENT = object()
