"""The Records port's reads of accounts, holds and lots, over FakeLedgerStore's dicts.

Decoded with the production codecs (core/adapters/documents.py), like the Firestore adapter
(core/adapters/firestore_holds.py); no rule here, only the queries' filters.
"""
from __future__ import annotations

from core.adapters.documents import CODECS
from core.domain.account import Account
from core.domain.holds import OPEN, Hold
from core.domain.lots import Lot


class FakeLotReads:
    docs: dict

    def _values(self, kind: type, **equal):
        codec = CODECS[kind]
        return [codec.from_doc(k, v) for k, v in sorted(self.docs.setdefault(codec.collection, {}).items())
                if all(v.get(f) == want for f, want in equal.items())]

    def get_account(self, user_id: str):
        doc = self.docs["users"].get(user_id)
        return None if doc is None else CODECS[Account].from_doc(user_id, doc)

    def get_hold(self, hold_id: str):
        doc = self.docs.setdefault("holds", {}).get(hold_id)
        return None if doc is None else CODECS[Hold].from_doc(hold_id, doc)

    def open_holds(self, user_id: str) -> list:
        return self._values(Hold, userId=user_id, status=OPEN)

    def user_holds(self, user_id: str, limit: int | None = None) -> list:
        holds = self._values(Hold, userId=user_id)
        return holds if limit is None else sorted(holds, key=lambda h: h.created_at, reverse=True)[:limit]

    def user_lots(self, user_id: str, limit: int | None = None) -> list:
        lots = self._values(Lot, userId=user_id)
        return lots if limit is None else sorted(lots, key=lambda lot: lot.created_at, reverse=True)[:limit]

    def due_expiries(self, now: float, limit: int, notice_until: float | None = None) -> list[str]:
        due = [h.user_id for h in self._values(Hold, status=OPEN) if h.expires_at <= now]
        due += [lot.user_id for lot in self._values(Lot, open=True) if lot.expires_at is not None
                and lot.expires_at <= now]
        if notice_until is not None:
            due += [lot.user_id for lot in self._values(Lot, open=True, expiringNotified=False)
                    if lot.expires_at is not None and lot.expires_at <= notice_until]
        return list(dict.fromkeys(due))[:limit]
