"""The Records port's reads of the outbox, endpoints and deliveries, over FakeLedgerStore's dicts.

Decoded with the production codecs, like the Firestore adapter (core/adapters/firestore_outbox.py):
the same filters and the same order (an endpoint's queue by the store's commit stamp, then position).
"""
from __future__ import annotations

from core.adapters.documents import CODECS
from core.domain.deliveries import DEAD_LETTERED, PENDING, Delivery
from core.domain.webhook_endpoints import Endpoint


class FakeOutboxReads:
    docs: dict

    def _collection(self, name: str) -> dict:
        return self.docs.setdefault(name, {})

    def undispatched_users(self, emitted_before: float, limit: int) -> list[str]:
        events = sorted((v for v in self._collection("outbox").values()
                         if v.get("dispatched") is False and v["emittedAt"] < emitted_before),
                        key=lambda v: v["emittedAt"])[:limit]
        return list(dict.fromkeys(v["userId"] for v in events))

    def undispatched_seqs(self, user_id: str, limit: int) -> list[int]:
        return sorted(v["seq"] for v in self._collection("outbox").values()
                      if v.get("userId") == user_id and v.get("dispatched") is False)[:limit]

    def list_endpoints(self) -> list[Endpoint]:
        return [CODECS[Endpoint].from_doc(k, v) for k, v in sorted(self._collection("webhook_endpoints").items())]

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        doc = self._collection("webhook_endpoints").get(endpoint_id)
        return None if doc is None else CODECS[Endpoint].from_doc(endpoint_id, doc)

    def _deliveries(self, status: str, endpoint_id: str | None, limit: int) -> list[Delivery]:
        found = [(k, v) for k, v in self._collection("deliveries").items() if v.get("status") == status
                 and (endpoint_id is None or v.get("endpointId") == endpoint_id)]
        found.sort(key=lambda kv: (kv[1]["createdAt"], kv[1]["position"]))
        return [CODECS[Delivery].from_doc(k, v) for k, v in found[:limit]]

    def pending_deliveries(self, endpoint_id: str, limit: int) -> list[Delivery]:
        return self._deliveries(PENDING, endpoint_id, limit)

    def dead_deliveries(self, endpoint_id: str | None, limit: int) -> list[Delivery]:
        return self._deliveries(DEAD_LETTERED, endpoint_id, limit)

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        doc = self._collection("deliveries").get(delivery_id)
        return None if doc is None else CODECS[Delivery].from_doc(delivery_id, doc)
