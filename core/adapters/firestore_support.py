"""What support staff read, and the operations log the console writes (the Records port's part).

Mixed into FirestoreRecords. Every query is bounded by its ``limit``. The ordered ones name
composite indexes in firestore.indexes.json: stripe_events (userId, receivedAt desc),
purchases (userId, updatedAt desc), ops_log (userId, createdAt desc) and transactions
(type, createdAt desc); the last-24-hours reads of stripe_events and security_alerts use the
automatic single-field indexes. Inbox records are read without their payload and signature
(``select``): a page of them stays small whatever the events carried. A user's alerts and
disputes are read unordered (not every older alert has ``createdAt``) and sorted here.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

EVENT_FIELDS = ("type", "status", "outcome", "error", "attempts", "userId", "sessionId", "invoiceId",
                "subscriptionId", "paymentIntentId", "paymentId", "deliveryCount", "eventCreated", "receivedAt",
                "lastReceivedAt", "updatedAt", "replayedAt", "sweeps", "livemode")
DESC = firestore.Query.DESCENDING


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, timezone.utc)


def _docs(query) -> list[dict]:
    return [{"id": s.id, **(s.to_dict() or {})} for s in query.stream()]


def _newest_first(docs: list[dict], field: str) -> list[dict]:
    def when(doc: dict) -> float:
        value = doc.get(field)
        return value.timestamp() if isinstance(value, datetime) else float(value or 0)
    return sorted(docs, key=when, reverse=True)


class SupportReads:
    db: Any

    def _mine(self, collection: str, user_id: str):
        return self.db.collection(collection).where(filter=FieldFilter("userId", "==", user_id))

    def user_purchases(self, user_id: str, limit: int) -> list[dict]:
        return _docs(self._mine("purchases", user_id).order_by("updatedAt", direction=DESC).limit(limit))

    def user_events(self, user_id: str, limit: int) -> list[dict]:
        query = (self._mine("stripe_events", user_id).order_by("receivedAt", direction=DESC)
                 .select(list(EVENT_FIELDS)).limit(limit))
        return _docs(query)

    def user_alerts(self, user_id: str, limit: int) -> list[dict]:
        return _newest_first(_docs(self._mine("security_alerts", user_id).limit(limit)), "createdAt")

    def user_disputes(self, user_id: str, limit: int) -> list[dict]:
        return _newest_first(_docs(self._mine("disputes", user_id).limit(limit)), "since")

    def user_ops_log(self, user_id: str, limit: int) -> list[dict]:
        return _docs(self._mine("ops_log", user_id).order_by("createdAt", direction=DESC).limit(limit))

    def start_ops_log(self, entry_id: str, fields: Mapping[str, Any]) -> bool:
        try:
            self.db.collection("ops_log").document(entry_id).create(
                {**fields, "createdAt": firestore.SERVER_TIMESTAMP})
            return True
        except AlreadyExists:
            return False

    def get_ops_log(self, entry_id: str) -> Mapping[str, Any] | None:
        return self.db.collection("ops_log").document(entry_id).get().to_dict()

    def finish_ops_log(self, entry_id: str, fields: Mapping[str, Any]) -> None:
        self.db.collection("ops_log").document(entry_id).set(
            {**fields, "finishedAt": firestore.SERVER_TIMESTAMP}, merge=True)

    def events_since(self, since: float, limit: int) -> list[dict]:
        query = (self.db.collection("stripe_events").where(filter=FieldFilter("receivedAt", ">=", _at(since)))
                 .order_by("receivedAt", direction=DESC).select(["status", "type", "receivedAt", "userId"]).limit(limit))
        return _docs(query)

    def credits_since(self, since: float, types: tuple[str, ...], limit: int) -> list[dict]:
        query = (self.db.collection("transactions").where(filter=FieldFilter("type", "in", list(types)))
                 .where(filter=FieldFilter("createdAt", ">=", _at(since)))
                 .order_by("createdAt", direction=DESC).select(["type", "amount", "createdAt"]).limit(limit))
        return _docs(query)

    def alerts_since(self, since: float, limit: int) -> list[dict]:
        query = (self.db.collection("security_alerts").where(filter=FieldFilter("createdAt", ">=", _at(since)))
                 .order_by("createdAt", direction=DESC).select(["type", "userId", "createdAt"]).limit(limit))
        return _docs(query)
