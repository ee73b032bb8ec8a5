"""Expiry: release holds past their expiry and expire what expired lots still hold, once.

Run by Celery beat every ``EXPIRY_EVERY_SECONDS`` (30 s), so an expired hold is released
and an expired lot written off within a minute. Each account is one unit of work on its
batch (core/services/account_batch.py); the domain decides what expires
(core/domain/account.py: never what open holds still need; a plan lot keeps what its
rollover cap allows). Entries are keyed by the lot and its expired total, so a rerun, a
retry or two schedulers at once write each expiry once. A failure on one account does not
stop the others; the run then raises, so Celery records it and the next run tries again.

The same pass announces lots about to expire: an open lot expiring within
``EXPIRING_NOTICE_SECONDS`` (3 days) gets one ``lot.expiring`` event, once (the lot remembers it,
and the query asks only for lots not yet announced, so announced lots cost nothing later).
"""
from __future__ import annotations

import logging

from core.domain.account import Account
from core.domain.holds import OPEN, Hold

log = logging.getLogger("tokenbank.expiry")
EXPIRY_EVERY_SECONDS = 30


class ExpiryFailed(Exception):
    pass


def expire_account(deps, user_id: str) -> dict:
    def work(tx) -> dict:
        account = tx.get(Account, user_id)
        if account is None:
            return {"holdsReleased": 0, "tokensExpired": 0}
        now = deps.clock()
        due = account.expired_holds(now)
        holds = tx.get_all(*[(Hold, hold_id) for hold_id in due]) if due else []
        for hold_id, hold in zip(due, holds):
            account = account.drop_hold(hold_id, now, "expired")
            if hold is not None and hold.status == OPEN:
                tx.put(hold.expire(now))
        account, entries = account.expire(now)
        account = account.notify_expiring(now, deps.settings.expiring_notice_seconds)
        for entry in entries:
            tx.add(entry)
        if due or entries or account.changed_lots or account.events:
            tx.put(account)
        return {"holdsReleased": len(due), "tokensExpired": -sum(e.amount for e in entries)}

    return deps.batch.submit(user_id, work, [(Account, user_id)])


def run(deps, limit: int = 1000) -> dict:
    """One pass over the accounts with an expired open hold or lot."""
    now = deps.clock()
    users = deps.store.due_expiries(now, limit, notice_until=now + deps.settings.expiring_notice_seconds)
    totals = {"accounts": 0, "holdsReleased": 0, "tokensExpired": 0, "failed": 0}
    for user_id in users:
        try:
            done = expire_account(deps, user_id)
        except Exception:
            log.exception("expiry failed", extra={"user_id": user_id})
            totals["failed"] += 1
            continue
        totals["accounts"] += 1
        totals["holdsReleased"] += done["holdsReleased"]
        totals["tokensExpired"] += done["tokensExpired"]
    log.info("expiry pass", extra=totals)
    if totals["failed"]:
        raise ExpiryFailed(f"{totals['failed']} of {len(users)} accounts failed; the next pass retries them")
    return totals
