"""Spending, granting and adjusting tokens: one idempotent ledger entry each, one transaction.

Spend is called by the signed-in user or a trusted backend; grant only by trusted callers;
adjust by operators. The same idempotency key with the same request returns the first
result; with a different request it is a conflict (409). The rules are the domain's
(core/domain/account.py): credits always land and repay debt first; a spend needs an
unfrozen account and the funds; a negative adjustment never takes a balance below zero.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from core import metrics
from core.domain.account import Account
from core.domain.errors import AccountFrozen, InsufficientFunds, InvalidRequest, KeyConflict, UnknownUser
from core.domain.ledger import (
    ADJUSTMENT, GRANT, MAX_GRANT, MAX_SPEND, SPEND, Entry, idempotency_key, keyed_entry_id, positive_amount,
    reason_text, request_hash,
)
from core.handlers.payments import locked

log = logging.getLogger("tokenbank.balance")


@dataclass(frozen=True)
class Posted:
    entry_id: str
    amount: int
    balance: int
    replayed: bool

    def as_dict(self) -> dict:
        return {"entryId": self.entry_id, "amount": self.amount, "balance": self.balance, "replayed": self.replayed}


def _post(deps, user_id: str, entry_type: str, amount: int, key: str, refs: dict, digest: str,
          must_exist: bool) -> Posted:
    entry_id = keyed_entry_id(entry_type, user_id, key)

    def work(tx) -> Posted:
        entry, account = tx.get_all((Entry, entry_id), (Account, user_id))
        if entry is not None:
            if entry.request_hash != digest:
                raise KeyConflict("this idempotency key was already used for a different request")
            return Posted(entry.id, entry.amount, entry.balance_after, True)
        if account is None and must_exist:
            raise UnknownUser(f"no account {user_id!r}; pass createAccount to grant to a new account"
                              if entry_type == GRANT else f"no account {user_id!r}")
        account, entry = (account or Account(user_id)).post(entry_id, entry_type, amount, refs, digest)
        tx.put(account)
        tx.add(entry)
        return Posted(entry.id, entry.amount, entry.balance_after, False)

    try:
        with locked(deps, user_id):
            posted = deps.uow.run(work)
    except (InsufficientFunds, AccountFrozen, KeyConflict) as refused:
        if entry_type == SPEND:
            metrics.SPENDS.labels("conflict" if isinstance(refused, KeyConflict) else type(refused).__name__).inc()
        raise
    if entry_type == SPEND:
        metrics.SPENDS.labels("replayed" if posted.replayed else "posted").inc()
    log.info("ledger entry %s", "replayed" if posted.replayed else "posted",
             extra={"user_id": user_id, "entry_id": posted.entry_id, "entry_type": entry_type,
                    "amount": posted.amount, "balance_after": posted.balance})
    return posted


def spend(deps, user_id: str, amount: object, reason: object, key: object, actor: str) -> Posted:
    amount, reason, key = positive_amount(amount, MAX_SPEND), reason_text(reason), idempotency_key(key)
    return _post(deps, user_id, SPEND, -amount, key, {"reason": reason, "actor": actor, "idempotencyKey": key},
                 request_hash(op="spend", amount=amount, reason=reason), must_exist=False)


def grant(deps, user_id: str, amount: object, reason: object, key: object, actor: str,
          create_account: bool = False) -> Posted:
    amount, reason, key = positive_amount(amount, MAX_GRANT), reason_text(reason), idempotency_key(key)
    return _post(deps, user_id, GRANT, amount, key, {"reason": reason, "actor": actor, "idempotencyKey": key},
                 request_hash(op="grant", amount=amount, reason=reason), must_exist=not create_account)


def adjust(deps, user_id: str, amount: object, reason: object, key: object, actor: str) -> Posted:
    """A support correction, either sign; may not take the balance below zero."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_GRANT:
        raise InvalidRequest(f"amount must be a non-zero whole number within ±{MAX_GRANT}", "amount")
    reason, key = reason_text(reason), idempotency_key(key)
    return _post(deps, user_id, ADJUSTMENT, amount, key, {"reason": reason, "actor": actor, "idempotencyKey": key},
                 request_hash(op="adjust", amount=amount, reason=reason), must_exist=True)
