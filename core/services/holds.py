"""Holds: reserve tokens before work starts, capture what the work used, release the rest.

Each operation is one unit of work on the account, submitted to the account's batch
(core/services/account_batch.py), so a busy account commits many of them per transaction
while each keeps its own idempotency key, answer and ledger entry. The rules are the
domain's (core/domain/holds.py, core/domain/account.py): a hold needs ``available`` tokens
and an unfrozen account; a capture of an open, unexpired hold always applies and releases
the rest in the same transaction; release is idempotent; an expired hold answers 410.
Answers are replayed from the hold itself: the same key and body answer what the first did.
"""
from __future__ import annotations

import logging
import math

from core import metrics
from core.domain.account import Account
from core.domain.errors import KeyConflict, UnknownHold
from core.domain.holds import EXPIRED, Hold, ttl_seconds
from core.domain.ids import is_valid_doc_id
from core.domain.ledger import (
    MAX_SPEND, SPEND, capture_entry_id, idempotency_key, keyed_entry_id, positive_amount, reason_text, request_hash,
)
from core.domain.errors import InvalidRequest
from core.handlers.debt import debt_alert, log_debt

log = logging.getLogger("tokenbank.holds")


def _now(deps) -> float:
    return deps.clock()


def _hold_id(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("hold_") or not is_valid_doc_id(value):
        raise UnknownHold("no such hold for this account")
    return value


def _own(hold: Hold | None, user_id: str) -> Hold:
    if hold is None or hold.user_id != user_id:
        raise UnknownHold("no such hold for this account")
    return hold


def _count(operation: str, outcome: str) -> None:
    metrics.HOLD_OPERATIONS.labels(operation, outcome).inc()


def place(deps, user_id: str, amount: object, key: object, ttl: object = None, reason: object = None,
          actor: str = "") -> dict:
    """A new hold of ``amount`` for ``ttl`` seconds → holdId, amount, expiresAt, available, replayed."""
    amount, key, ttl = positive_amount(amount, MAX_SPEND), idempotency_key(key), ttl_seconds(ttl)
    reason = None if reason is None else reason_text(reason)
    digest = request_hash(op="hold", amount=amount, ttl=ttl, reason=reason)
    hold_id = keyed_entry_id("hold", user_id, key)

    def work(tx) -> dict:
        existing, account = tx.get_all((Hold, hold_id), (Account, user_id))
        if existing is not None:
            if existing.request_hash != digest or existing.user_id != user_id:
                raise KeyConflict("this idempotency key was already used for a different request")
            first = existing.history[0] if existing.history else {}
            return _placed(existing, int(first.get("available", 0)), True)
        now = _now(deps)
        expires_at = math.ceil(now) + ttl
        account = (account or Account(user_id)).place_hold(hold_id, amount, expires_at, now)
        available = account.available(now)
        hold = Hold(hold_id, user_id, amount, expires_at, now, key, digest, reason, actor).placed(
            now, actor, available=available)
        tx.put(account)
        tx.put(hold)
        return _placed(hold, available, False)

    answer = _submit(deps, "place", user_id, work, [(Hold, hold_id), (Account, user_id)])
    log.info("hold %s", "replayed" if answer["replayed"] else "placed",
             extra={"user_id": user_id, "hold_id": hold_id, "amount": amount})
    return answer


def _placed(hold: Hold, available: int, replayed: bool) -> dict:
    return {"holdId": hold.id, "amount": hold.amount, "expiresAt": int(hold.expires_at), "available": available,
            "replayed": replayed}


def capture(deps, user_id: str, hold_id: object, amount: object, key: object, actor: str = "") -> dict:
    """Capture 0 … the held amount; the rest is released → entryId, captured, released, balance, available."""
    hold_id = _hold_id(hold_id)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_SPEND:
        raise InvalidRequest(f"amount must be a whole number from 0 to {MAX_SPEND}", "amount")
    key = idempotency_key(key)
    digest = request_hash(op="capture", hold=hold_id, amount=amount)
    entry_id = capture_entry_id(hold_id)

    def work(tx) -> dict:
        hold, account = tx.get_all((Hold, hold_id), (Account, user_id))
        hold = _own(hold, user_id)
        if hold.is_replay_of_capture(key, digest):
            step = next((s for s in reversed(hold.history) if s.get("action") == "captured"), {})
            return _captured(hold, int(step.get("balance", 0)), int(step.get("available", 0)), True)
        now = _now(deps)
        hold.check_capture(amount, now)
        account = account or Account(user_id)
        if amount:
            debt_before = account.debt
            account, entry = account.post(entry_id, SPEND, -amount,
                                          {"holdId": hold_id, "reason": hold.reason or "hold capture",
                                           "actor": actor, "idempotencyKey": key}, digest, now=now, hold=hold_id)
            tx.add(entry)
            if account.debt > debt_before:  # a reversal took tokens this hold counted on
                tx.put(debt_alert(user_id, entry.id, account.balance, "hold capture after a reversal"))
        else:
            account = account.drop_hold(hold_id, now, "captured")
        available = account.available(now)
        captured = hold.capture(amount, key, digest, entry_id if amount else None, now, actor,
                                balance=account.balance, available=available)
        tx.put(account)
        tx.put(captured)
        return _captured(captured, account.balance, available, False)

    answer = _submit(deps, "capture", user_id, work, [(Hold, hold_id), (Account, user_id)])
    if not answer["replayed"]:
        log_debt(user_id, answer["balance"], "a hold capture after a reversal")
    return answer


def _captured(hold: Hold, balance: int, available: int, replayed: bool) -> dict:
    return {"holdId": hold.id, "entryId": hold.entry_id, "captured": hold.captured, "released": hold.released,
            "balance": balance, "available": available, "replayed": replayed}


def release(deps, user_id: str, hold_id: object, actor: str = "") -> dict:
    """Release an open hold (idempotent: a released or expired hold answers as it is)."""
    hold_id = _hold_id(hold_id)

    def work(tx) -> dict:
        hold, account = tx.get_all((Hold, hold_id), (Account, user_id))
        hold = _own(hold, user_id)
        now = _now(deps)
        account = account or Account(user_id)
        released = hold.release(now, actor)
        if released is not None:
            account = account.drop_hold(hold_id, now, "expired" if released.status == EXPIRED else "released")
            tx.put(account)
            tx.put(released)
            hold = released
        return {"holdId": hold.id, "status": hold.status, "released": hold.released,
                "available": account.available(now)}

    return _submit(deps, "release", user_id, work, [(Hold, hold_id), (Account, user_id)])


def extend(deps, user_id: str, hold_id: object, ttl: object, actor: str = "") -> dict:
    """A new expiry ``ttl`` seconds from now for an open hold → holdId, expiresAt."""
    hold_id = _hold_id(hold_id)
    if ttl is None:
        raise InvalidRequest("ttlSeconds is required", "ttlSeconds")
    ttl = ttl_seconds(ttl)

    def work(tx) -> dict:
        hold, account = tx.get_all((Hold, hold_id), (Account, user_id))
        hold = _own(hold, user_id)
        now = _now(deps)
        extended = hold.extend(math.ceil(now) + ttl, now, actor)
        tx.put((account or Account(user_id)).set_hold_expiry(hold_id, extended.expires_at))
        tx.put(extended)
        return {"holdId": hold_id, "amount": hold.amount, "expiresAt": int(extended.expires_at)}

    return _submit(deps, "extend", user_id, work, [(Hold, hold_id), (Account, user_id)])


def open_holds(deps, user_id: str) -> dict:
    now = _now(deps)
    holds = [h for h in deps.store.open_holds(user_id) if not h.expired_at(now)]
    return {"holds": [{"holdId": h.id, "amount": h.amount, "expiresAt": int(h.expires_at), "reason": h.reason,
                       "createdAt": int(h.created_at)} for h in sorted(holds, key=lambda h: (h.created_at, h.id))]}


def _submit(deps, operation: str, user_id: str, work, reads) -> dict:
    try:
        answer = deps.batch.submit(user_id, work, reads)
    except Exception as exc:
        _count(operation, type(exc).__name__)
        raise
    _count(operation, "replayed" if answer.get("replayed") else "ok")
    return answer
