"""The Records port on Cloud Firestore: reads for the API, jobs and operators, and the writes
that carry no money (alerts, the operations log, checkout records, event records outside a
money change). Every money change goes through the unit of work (firestore_uow.py).

Collections (see docs/DATA_MODEL.md): users, transactions (the append-only ledger),
purchases, payment_intents, disputes, checkouts, stripe_events, security_alerts, ops_log; the
outbox, webhook endpoints and deliveries (firestore_outbox.py).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from datetime import datetime, timezone

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from core.adapters.firestore_holds import HoldAndLotReads
from core.adapters.firestore_outbox import OutboxReads
from core.adapters.firestore_support import SupportReads
from core.domain.records import Alert
from core.store import InvalidCursor

USERS, LEDGER, PURCHASES, EVENTS, ALERTS = "users", "transactions", "purchases", "stripe_events", "security_alerts"
DISPUTES, OPS_LOG, CHECKOUTS, JOBS = "disputes", "ops_log", "checkouts", "jobs"
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


class FirestoreRecords(HoldAndLotReads, SupportReads, OutboxReads):
    def __init__(self, db: firestore.Client):
        self.db = db

    def _ref(self, collection: str, doc_id: str):
        return self.db.collection(collection).document(doc_id)

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

    def receive_event(self, event_id: str, fields: Mapping[str, Any]) -> bool:
        ref = self._ref(EVENTS, event_id)
        now = firestore.SERVER_TIMESTAMP
        try:
            ref.create({**fields, "deliveryCount": 1, "receivedAt": now, "lastReceivedAt": now, "updatedAt": now})
            return True
        except AlreadyExists:
            ref.update({"deliveryCount": firestore.Increment(1), "lastReceivedAt": now})
            return False

    def request_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        now = firestore.SERVER_TIMESTAMP
        self._ref(JOBS, job_id).set({**fields, "status": "requested", "requestedAt": now, "updatedAt": now},
                                    merge=True)

    def finish_job(self, job_id: str, status: str, fields: Mapping[str, Any]) -> None:
        self._ref(JOBS, job_id).set({**fields, "status": status, "updatedAt": firestore.SERVER_TIMESTAMP},
                                    merge=True)

    def requested_jobs(self, requested_before: float, limit: int) -> list[dict]:
        cutoff = datetime.fromtimestamp(requested_before, timezone.utc)
        query = (self.db.collection(JOBS).where(filter=FieldFilter("status", "==", "requested"))
                 .where(filter=FieldFilter("requestedAt", "<", cutoff)).order_by("requestedAt").limit(limit))
        return [{"id": s.id, **s.to_dict()} for s in query.stream()]

    def received_events(self, received_before: float, limit: int) -> list[dict]:
        cutoff = datetime.fromtimestamp(received_before, timezone.utc)
        query = (self.db.collection(EVENTS).where(filter=FieldFilter("status", "==", "received"))
                 .where(filter=FieldFilter("receivedAt", "<", cutoff)).order_by("receivedAt").limit(limit))
        return [{"id": s.id, **s.to_dict()} for s in query.stream()]

    def find_purchase_by_payment_intent(self, payment_intent: str) -> tuple[str, Mapping[str, Any]] | None:
        query = self.db.collection(PURCHASES).where(filter=FieldFilter("paymentIntentId", "==", payment_intent))
        for snap in query.limit(1).stream():
            return snap.id, snap.to_dict()
        return None

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

    def record_checkout(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """The Checkout Session tokenbank created for a user (who may confirm it, until when)."""
        self._ref(CHECKOUTS, session_id).set({**fields, "createdAt": firestore.SERVER_TIMESTAMP})

    def recent_purchases(self, user_id: str, since: float) -> list[dict]:
        return self._since(PURCHASES, user_id, "fulfilledAt", since)

    def recent_checkouts(self, user_id: str, since: float) -> list[dict]:
        return self._since(CHECKOUTS, user_id, "createdAt", since)

    def _since(self, collection: str, user_id: str, field: str, since: float) -> list[dict]:
        query = (self.db.collection(collection).where(filter=FieldFilter("userId", "==", user_id))
                 .where(filter=FieldFilter(field, ">=", datetime.fromtimestamp(since, timezone.utc))).limit(500))
        return [{"id": s.id, **s.to_dict()} for s in query.stream()]

    def get_checkout(self, session_id: str) -> Mapping[str, Any] | None:
        return self._ref(CHECKOUTS, session_id).get().to_dict()

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
