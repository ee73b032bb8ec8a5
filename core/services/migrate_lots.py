"""The lots migration: one lot per credit that has none, holding what is left of it.

Accounts older than lots have a balance but no lots. For each account, every credit entry
(purchase, plan allowance, grant, positive adjustment) without a lot gets one, and the
tokens no lot accounts for (the balance less what lots already hold; nothing in debt) are
assigned to those credits newest first — the spend order (oldest first, none of them
expiring) applied to the spends that came before lots. Lots get the credit's id, source
and cost basis; nothing expires. It runs in the account's unit of work, so it can run
while the account is used, and as often as wanted: a credit that has its lot is skipped,
so a second run changes nothing.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from core.domain.account import Account
from core.domain.ledger import ADJUSTMENT, ALLOWANCE, GRANT, PURCHASE
from core.domain.lots import (
    ADJUSTMENT_LOT, GRANT_LOT, PLAN_LOT, PROMO_LOT, PURCHASE_LOT, Lot, LotSpec, migrated_lots,
)

_SOURCE = {PURCHASE: PURCHASE_LOT, ALLOWANCE: PLAN_LOT, GRANT: GRANT_LOT, ADJUSTMENT: ADJUSTMENT_LOT}


def _created(entry: Mapping[str, Any]) -> float:
    value = entry.get("createdAt") or entry.get("_created")
    return value.timestamp() if isinstance(value, datetime) else float(value or 0)


def _spec(entry: Mapping[str, Any]) -> LotSpec:
    source = _SOURCE[entry["type"]]
    if entry["type"] == GRANT and entry.get("source") == PROMO_LOT:
        source = PROMO_LOT
    payment = entry.get("checkoutSessionId") or entry.get("invoiceId")
    return LotSpec(source, cost_cents=entry.get("amountPaid"), currency=entry.get("currency"), payment_id=payment,
                   plan_id=entry.get("planId") if entry["type"] == ALLOWANCE else None)


def migrate_account(deps, user_id: str) -> dict:
    _user, entries, _purchases = deps.store.user_ledger(user_id)
    credits = sorted((e for e in entries if e.get("type") in _SOURCE and int(e.get("amount") or 0) > 0),
                     key=lambda e: (_created(e), e["id"]))
    if not credits:
        return {"userId": user_id, "lotsCreated": 0, "tokensAssigned": 0}

    def work(tx) -> dict:
        account = tx.get(Account, user_id)
        if account is None:
            return {"userId": user_id, "lotsCreated": 0, "tokensAssigned": 0}
        existing = tx.get_all(*[(Lot, e["id"]) for e in credits])
        missing = [e for e, lot in zip(credits, existing) if lot is None and e["id"] not in account.lots]
        if not missing:
            return {"userId": user_id, "lotsCreated": 0, "tokensAssigned": 0}
        unassigned = max(0, account.balance - sum(lot.remaining for lot in account.lots.values()))
        lots = migrated_lots(user_id, unassigned, [(e["id"], e["type"], int(e["amount"]), _created(e), _spec(e))
                                                   for e in missing])
        tx.put(account.with_lots(lots))
        return {"userId": user_id, "lotsCreated": len(lots), "tokensAssigned": sum(lot.remaining for lot in lots)}

    return deps.batch.submit(user_id, work, [(Account, user_id)])


def migrate_all(deps, batch_size: int = 200) -> dict:
    totals = {"accounts": 0, "lotsCreated": 0, "tokensAssigned": 0}
    for user_id in deps.store.iter_user_ids(batch_size):
        done = migrate_account(deps, user_id)
        totals["accounts"] += 1
        totals["lotsCreated"] += done["lotsCreated"]
        totals["tokensAssigned"] += done["tokensAssigned"]
    return totals
