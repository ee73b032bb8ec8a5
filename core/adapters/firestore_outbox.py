"""Reads of the outbox, webhook endpoints and deliveries (the Records port's part for them).

Mixed into FirestoreRecords. Queries name the composite indexes in firestore.indexes.json:
outbox (dispatched, emittedAt) for the sweep, outbox (userId, dispatched, seq) for one account's
fan-out, deliveries (endpointId, status, createdAt, position) for an endpoint's queue and its dead
letters, and deliveries (status, createdAt, position) for every dead letter.
"""
from __future__ import annotations

from google.cloud.firestore_v1.base_query import FieldFilter

from core.adapters.documents import CODECS
from core.domain.deliveries import DEAD_LETTERED, PENDING, Delivery
from core.domain.outbox import AccountEvent
from core.domain.webhook_endpoints import Endpoint

MAX_ENDPOINTS = 500


class OutboxReads:
    db: object

    def _collection(self, kind: type):
        return self.db.collection(CODECS[kind].collection)

    def undispatched_users(self, emitted_before: float, limit: int) -> list[str]:
        query = (self._collection(AccountEvent).where(filter=FieldFilter("dispatched", "==", False))
                 .where(filter=FieldFilter("emittedAt", "<", emitted_before)).order_by("emittedAt").limit(limit)
                 .select(["userId"]))
        return list(dict.fromkeys(s.get("userId") for s in query.stream() if s.get("userId")))

    def undispatched_seqs(self, user_id: str, limit: int) -> list[int]:
        query = (self._collection(AccountEvent).where(filter=FieldFilter("userId", "==", user_id))
                 .where(filter=FieldFilter("dispatched", "==", False)).order_by("seq").limit(limit).select(["seq"]))
        return [int(s.get("seq")) for s in query.stream()]

    def list_endpoints(self) -> list[Endpoint]:
        codec = CODECS[Endpoint]
        return [codec.from_doc(s.id, s.to_dict()) for s in self._collection(Endpoint).limit(MAX_ENDPOINTS).stream()]

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        return self._value(Endpoint, endpoint_id)

    def _deliveries(self, status: str, endpoint_id: str | None, limit: int) -> list[Delivery]:
        query = self._collection(Delivery)
        if endpoint_id is not None:
            query = query.where(filter=FieldFilter("endpointId", "==", endpoint_id))
        query = query.where(filter=FieldFilter("status", "==", status)).order_by("createdAt").order_by("position")
        codec = CODECS[Delivery]
        return [codec.from_doc(s.id, s.to_dict()) for s in query.limit(limit).stream()]

    def pending_deliveries(self, endpoint_id: str, limit: int) -> list[Delivery]:
        return self._deliveries(PENDING, endpoint_id, limit)

    def dead_deliveries(self, endpoint_id: str | None, limit: int) -> list[Delivery]:
        return self._deliveries(DEAD_LETTERED, endpoint_id, limit)

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        return self._value(Delivery, delivery_id)
