"""Spending, granting and adjusting tokens: one idempotent ledger entry each, one transaction.

Spend is called by the signed-in user or a trusted backend; grant only by trusted callers;
adjust by operators. The same idempotency key with the same request returns the first
result; with a different request it is a conflict (409). The rules are the domain's
(core/domain/account.py): credits always land and repay debt first; a spend needs an
unfrozen account and the available funds; a negative adjustment never takes more than is available.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from core import metrics
from core.domain.account import Account
from core.domain.errors import AccountFrozen, InsufficientFunds, InvalidRequest, KeyConflict, UnknownUser
from core.domain.ledger import (
    ADJUSTMENT, GRANT, MAX_GRANT, MAX_SPEND, SPEND, Entry, idempotency_key, keyed_entry_id, positive_amount,
    reason_text, request_hash,
)
from core.domain.lots import GRANT_LOT, PROMO_LOT, LotSpec

MAX_EXPIRY = 10 * 366 * 86_400

log = logging.getLogger("tokenbank.balance")


@dataclass(frozen=True)
class Posted:
    entry_id: str
    amount: int
    balance: int
    replayed: bool
    available: int | None = None  # what was available right after (entries from before holds: None)

    def as_dict(self) -> dict:
        answer = {"entryId": self.entry_id, "amount": self.amount, "balance": self.balance, "replayed": self.replayed}
        return answer if self.available is None else {**answer, "available": self.available}


def _post(deps, user_id: str, entry_type: str, amount: int, key: str, refs: dict, digest: str,
          must_exist: bool, lot: LotSpec | None = None) -> Posted:
    entry_id = keyed_entry_id(entry_type, user_id, key)

    def work(tx) -> Posted:
        entry, account = tx.get_all((Entry, entry_id), (Account, user_id))
        if entry is not None:
            if entry.request_hash != digest:
                raise KeyConflict("this idempotency key was already used for a different request")
            return Posted(entry.id, entry.amount, entry.balance_after, True, entry.refs.get("availableAfter"))
        if account is None and must_exist:
            raise UnknownUser(f"no account {user_id!r}; pass createAccount to grant to a new account"
                              if entry_type == GRANT else f"no account {user_id!r}")
        now = deps.clock()
        account, entry = (account or Account(user_id)).post(entry_id, entry_type, amount, refs, digest, now=now,
                                                             lot=lot)
        available = account.available(now)
        entry = replace(entry, refs={**entry.refs, "availableAfter": available})  # so a replay answers the same
        tx.put(account)
        tx.add(entry)
        return Posted(entry.id, entry.amount, entry.balance_after, False, available)

    try:
        posted = deps.batch.submit(user_id, work, [(Entry, entry_id), (Account, user_id)])
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
          create_account: bool = False, expires_at: object = None, source: object = None) -> Posted:
    """Tokens from a trusted caller: a ``grant`` lot, or ``promo``; ``expiresAt`` (unix seconds) optional."""
    amount, reason, key = positive_amount(amount, MAX_GRANT), reason_text(reason), idempotency_key(key)
    source = GRANT_LOT if source is None else source
    if source not in (GRANT_LOT, PROMO_LOT):
        raise InvalidRequest(f"source must be {GRANT_LOT!r} or {PROMO_LOT!r}", "source")
    if expires_at is not None:
        now = deps.clock()
        if isinstance(expires_at, bool) or not isinstance(expires_at, int) or not now < expires_at <= now + MAX_EXPIRY:
            raise InvalidRequest("expiresAt must be a unix time in seconds, in the future and within 10 years",
                                 "expiresAt")
    refs = {"reason": reason, "actor": actor, "idempotencyKey": key, "source": source}
    if expires_at is not None:
        refs["expiresAt"] = expires_at
    return _post(deps, user_id, GRANT, amount, key, refs,
                 request_hash(op="grant", amount=amount, reason=reason, **({} if source == GRANT_LOT and expires_at
                                                                          is None else {"source": source,
                                                                                        "expiresAt": expires_at})),
                 must_exist=not create_account, lot=LotSpec(source, expires_at=expires_at))


def adjust(deps, user_id: str, amount: object, reason: object, key: object, actor: str) -> Posted:
    """A support correction, either sign; may not take the balance below zero."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_GRANT:
        raise InvalidRequest(f"amount must be a non-zero whole number within ±{MAX_GRANT}", "amount")
    reason, key = reason_text(reason), idempotency_key(key)
    return _post(deps, user_id, ADJUSTMENT, amount, key, {"reason": reason, "actor": actor, "idempotencyKey": key},
                 request_hash(op="adjust", amount=amount, reason=reason), must_exist=True)
