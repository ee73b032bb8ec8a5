"""Spending and granting tokens: one idempotent ledger entry each.

Spend is called by the signed-in user or a trusted backend; grant only by trusted callers.
The same idempotency key with the same request returns the first result; with a different
request it is a conflict. Spending never takes a balance below zero and is refused while
the account is frozen by a dispute.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from core.checkout_service import InvalidRequest
from core.deps import Deps
from core.ledger import MAX_GRANT, MAX_SPEND, idempotency_key, keyed_entry_id, positive_amount, reason_text, request_hash
from core import metrics
from core.store import AccountFrozen, EntryRequest, EntryResult, InsufficientFunds
from core.user_lock import user_lock

log = logging.getLogger("tokenbank.balance")


class KeyConflict(Exception):
    """The idempotency key was used before for a different request."""


class UnknownUser(Exception):
    pass


@dataclass(frozen=True)
class Posted:
    entry_id: str
    amount: int
    balance: int
    replayed: bool

    def as_dict(self) -> dict:
        return {"entryId": self.entry_id, "amount": self.amount, "balance": self.balance, "replayed": self.replayed}


def _post(deps: Deps, request: EntryRequest) -> Posted:
    settings = deps.settings
    try:
        with user_lock(deps.redis, request.user_id, settings.user_lock_ttl_ms, settings.user_lock_wait_seconds):
            result: EntryResult = deps.store.post_entry(request)
    except (InsufficientFunds, AccountFrozen) as refused:
        if request.type == "spend":
            metrics.SPENDS.labels(type(refused).__name__).inc()
        raise
    if request.type == "spend":
        metrics.SPENDS.labels("conflict" if result.conflict else "replayed" if not result.created else "posted").inc()
    if result.conflict:
        raise KeyConflict("this idempotency key was already used for a different request")
    log.info("ledger entry %s", "replayed" if not result.created else "posted",
             extra={"user_id": request.user_id, "entry_id": result.entry_id, "entry_type": request.type,
                    "amount": result.amount, "balance_after": result.balance_after})
    return Posted(result.entry_id, result.amount, result.balance_after, not result.created)


def spend(deps: Deps, user_id: str, amount: object, reason: object, key: object, actor: str) -> Posted:
    amount, reason, key = positive_amount(amount, MAX_SPEND), reason_text(reason), idempotency_key(key)
    return _post(deps, EntryRequest(
        keyed_entry_id("spend", user_id, key), user_id, "spend", -amount,
        {"reason": reason, "actor": actor, "idempotencyKey": key},
        request_hash(op="spend", amount=amount, reason=reason), require_funds=True))


def grant(deps: Deps, user_id: str, amount: object, reason: object, key: object, actor: str,
          create_account: bool = False) -> Posted:
    amount, reason, key = positive_amount(amount, MAX_GRANT), reason_text(reason), idempotency_key(key)
    if not create_account and deps.store.get_user(user_id) is None:
        raise UnknownUser(f"no account {user_id!r}; pass createAccount to grant to a new account")
    return _post(deps, EntryRequest(
        keyed_entry_id("grant", user_id, key), user_id, "grant", amount,
        {"reason": reason, "actor": actor, "idempotencyKey": key},
        request_hash(op="grant", amount=amount, reason=reason)))


def adjust(deps: Deps, user_id: str, amount: object, reason: object, key: object, actor: str) -> Posted:
    """A support correction, either sign; may not take the balance below zero."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_GRANT:
        raise InvalidRequest(f"amount must be a non-zero whole number within ±{MAX_GRANT}", "amount")
    reason, key = reason_text(reason), idempotency_key(key)
    if deps.store.get_user(user_id) is None:
        raise UnknownUser(f"no account {user_id!r}")
    return _post(deps, EntryRequest(
        keyed_entry_id("adjustment", user_id, key), user_id, "adjustment", amount,
        {"reason": reason, "actor": actor, "idempotencyKey": key},
        request_hash(op="adjust", amount=amount, reason=reason)))
