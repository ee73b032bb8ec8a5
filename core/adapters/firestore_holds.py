"""Reads of accounts, holds and lots as domain values (the Records port's part for them).

Mixed into FirestoreRecords. Queries name the composite indexes in firestore.indexes.json:
holds (userId, status), holds (status, expiresAt), lots (open, expiresAt), for the notices of
lots about to expire lots (open, expiringNotified, expiresAt), and for the newest first (the
support console) holds (userId, placedAt desc) and lots (userId, createdAt desc).
"""
from __future__ import annotations

from google.cloud.firestore_v1.base_query import FieldFilter

from core.adapters.documents import CODECS
from core.domain.account import Account
from core.domain.holds import OPEN, Hold
from core.domain.lots import Lot

MAX_OPEN_HOLDS_LISTED = 500


class HoldAndLotReads:
    db: object

    def _value(self, kind: type, key: str):
        codec = CODECS[kind]
        doc = self.db.collection(codec.collection).document(key).get().to_dict()
        return None if doc is None else codec.from_doc(key, doc)

    def get_account(self, user_id: str) -> Account | None:
        return self._value(Account, user_id)

    def get_hold(self, hold_id: str) -> Hold | None:
        return self._value(Hold, hold_id)

    def open_holds(self, user_id: str) -> list[Hold]:
        query = (self.db.collection(CODECS[Hold].collection).where(filter=FieldFilter("userId", "==", user_id))
                 .where(filter=FieldFilter("status", "==", OPEN)).limit(MAX_OPEN_HOLDS_LISTED))
        return [CODECS[Hold].from_doc(s.id, s.to_dict()) for s in query.stream()]

    def user_holds(self, user_id: str, limit: int | None = None) -> list[Hold]:
        query = self.db.collection(CODECS[Hold].collection).where(filter=FieldFilter("userId", "==", user_id))
        if limit is not None:  # the newest (support's view): index holds (userId, placedAt desc)
            query = query.order_by("placedAt", direction="DESCENDING").limit(limit)
        return [CODECS[Hold].from_doc(s.id, s.to_dict()) for s in query.stream()]

    def user_lots(self, user_id: str, limit: int | None = None) -> list[Lot]:
        query = self.db.collection(CODECS[Lot].collection).where(filter=FieldFilter("userId", "==", user_id))
        if limit is not None:  # the newest (support's view): index lots (userId, createdAt desc)
            query = query.order_by("createdAt", direction="DESCENDING").limit(limit)
        return [CODECS[Lot].from_doc(s.id, s.to_dict()) for s in query.stream()]

    def due_expiries(self, now: float, limit: int, notice_until: float | None = None) -> list[str]:
        """Users with an open hold or an open lot whose expiry has passed, and with ``notice_until``
        users with an open lot expiring by then not yet announced (each user once)."""
        users: dict[str, None] = {}
        lot_docs = self.db.collection(CODECS[Lot].collection)
        holds = (self.db.collection(CODECS[Hold].collection).where(filter=FieldFilter("status", "==", OPEN))
                 .where(filter=FieldFilter("expiresAt", "<=", now)).limit(limit))
        lots = (lot_docs.where(filter=FieldFilter("open", "==", True))
                .where(filter=FieldFilter("expiresAt", "<=", now)).limit(limit))
        queries = [holds, lots]
        if notice_until is not None:
            queries.append(lot_docs.where(filter=FieldFilter("open", "==", True))
                           .where(filter=FieldFilter("expiringNotified", "==", False))
                           .where(filter=FieldFilter("expiresAt", "<=", notice_until)).limit(limit))
        for query in queries:
            for snap in query.stream():
                user_id = snap.to_dict().get("userId")
                if user_id:
                    users[user_id] = None
        return list(users)[:limit]
