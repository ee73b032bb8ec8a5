"""The operators' actions (the ``tokenbank`` CLI, admin/cli.py): one function per command.

Each takes ``deps`` (and the queue where it enqueues) and returns plain, JSON-ready data; the
actions that can refuse or find problems return a ``Verdict`` (the data, and whether all was
well). Every change carries the operator's name: the ledger entry's actor or the ops_log entry.
Refusals raise ``REFUSED`` (the request was understood and declined) or ``BAD_REQUEST``.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from core import redis_keys
from core.services.migrate_lots import migrate_account, migrate_all
from core.services import accounts
from core.services.support_access import find_user
from core.services.audit import audit as audit_ledger
from core.domain.errors import (
    InsufficientFunds, InvalidRequest, KeyConflict, UnknownDelivery, UnknownEndpoint, UnknownUser,
)
from core.domain.ids import is_valid_doc_id
from core.services.jobs import audit_alerts
from core.services.reconcile import reconcile as reconcile_with_stripe
from core.services import balance

REFUSED = (UnknownUser, KeyConflict, InsufficientFunds, UnknownEndpoint, UnknownDelivery)
BAD_REQUEST = (InvalidRequest,)
REPLAY_ALL_LIMIT = 1000
SPOOLED_FIELDS = ("event_id", "event_type", "error", "attempts")
DEAD_LETTER_FIELDS = ("id", "type", "error", "attempts", "updatedAt")


@dataclass(frozen=True)
class Verdict:
    data: Any
    ok: bool  # False: refused, or problems found


def is_valid_user_id(value: str) -> bool:
    return is_valid_doc_id(value)


def _operator(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("an operator name is required", "operator")
    return name


# --- dead letters ----------------------------------------------------------------------------

def dead_letters(deps, limit: int) -> list[dict]:
    """The events dead-lettered in Firestore, newest first."""
    return [{k: e.get(k) for k in DEAD_LETTER_FIELDS} for e in deps.store.list_events("dead_lettered", limit)]


def spooled_dead_letters(deps, limit: int) -> list[dict]:
    """The dead letters spooled to Redis while Firestore was down."""
    raw = deps.redis.lrange(redis_keys.DEAD_LETTER_SPOOL, 0, limit - 1)
    return [{k: letter.get(k) for k in SPOOLED_FIELDS} for letter in map(json.loads, raw)]


def replay_dead_letters(deps, queue, event_id: str | None = None, all_failed: bool = False) -> Verdict:
    """Re-enqueue one dead-lettered event, or all of them (idempotent: a credited event stays credited).

    Refused (ok False) for an event with no stored payload: it was never dead-lettered."""
    events = (deps.store.list_events("dead_lettered", REPLAY_ALL_LIMIT) if all_failed
              else [{"id": event_id, **(deps.store.get_event(event_id) or {})}])
    replayed = 0
    for event in events:
        if not event.get("payload"):
            return Verdict({"id": event["id"], "error": "no stored payload: not a dead-lettered event"}, ok=False)
        # Back to ``received`` first: a worker that takes the job at once must not find the event
        # finished (it would skip it as a duplicate); if the broker refuses, the sweep enqueues it.
        deps.store.record_event(event["id"], {"status": "received", "replayedAt": deps.clock()})
        queue.enqueue_event(event["id"], event.get("type", ""), event["payload"], event.get("signature") or "")
        replayed += 1
    return Verdict({"replayed": replayed}, ok=True)


def replay_spooled(deps, queue) -> dict:
    """Enqueue and drain the Redis spool; a letter that fails to enqueue goes back for the next try."""
    replayed = 0
    while (raw := deps.redis.rpop(redis_keys.DEAD_LETTER_SPOOL)) is not None:
        letter = json.loads(raw)
        try:
            queue.enqueue_event(letter["event_id"], letter.get("event_type", ""), letter["payload"],
                                letter.get("signature") or "")
        except Exception:
            deps.redis.rpush(redis_keys.DEAD_LETTER_SPOOL, raw)
            raise
        replayed += 1
    return {"replayed": replayed}


# --- purchase rate limit ---------------------------------------------------------------------

def _windows(deps, user_id: str) -> dict[str, list]:
    keys = (redis_keys.velocity(user_id), redis_keys.reservations(user_id))
    return {k: deps.redis.zrange(k, 0, -1, withscores=True) for k in keys}


def rate_limit(deps, user_id: str) -> dict:
    """A user's purchase windows: paid purchases and open checkouts, with their times."""
    paid, open_checkouts = _windows(deps, user_id).values()
    return {"userId": user_id, "paidPurchases": paid, "openCheckouts": open_checkouts}


def clear_rate_limit(deps, user_id: str) -> dict[str, list]:
    """Clear a user's purchase windows and return what they held; the caller logs it."""
    state = _windows(deps, user_id)
    deps.redis.delete(*state)
    return {k: [m for m, _ in v] for k, v in state.items()}


def reset_rate_limit(deps, user_id: str, operator: str) -> dict:
    """Clear a user's purchase windows; the ops_log keeps who did it and what was there. The ledger is untouched."""
    operator = _operator(operator)
    before = clear_rate_limit(deps, user_id)
    deps.store.add_ops_log({"action": "ratelimit_reset", "userId": user_id, "operator": operator, "before": before})
    return {"reset": user_id, "ledger_untouched": True}


# --- ledger entries --------------------------------------------------------------------------

def grant(deps, user_id: str, amount: int, reason: str, key: str | None, operator: str,
          create_account: bool = False) -> dict:
    """A ``grant`` ledger entry, its actor the operator (idempotent on key; a new key when none)."""
    posted = balance.grant(deps, user_id, amount, reason, key or f"cli-{uuid.uuid4()}",
                               f"operator:{_operator(operator)}", create_account=create_account)
    return posted.as_dict()


def adjust(deps, user_id: str, amount: int, reason: str, key: str | None, operator: str) -> dict:
    """An ``adjustment`` ledger entry of either sign, never below zero, its actor the operator."""
    posted = balance.adjust(deps, user_id, amount, reason, key or f"cli-{uuid.uuid4()}",
                                f"operator:{_operator(operator)}")
    return posted.as_dict()


def migrate_lots(deps, user_id: str | None, operator: str) -> dict:
    """Give lots to accounts older than lots (core/services/migrate_lots.py); safe to run again."""
    operator = _operator(operator)
    done = migrate_account(deps, user_id) if user_id else migrate_all(deps)
    deps.store.add_ops_log({"action": "migrate_lots", "userId": user_id, "operator": operator, "result": done})
    return done


def support_access(deps, who: str, grant: bool, operator: str) -> dict:
    """Give (or take) the support console to an account, by email or uid: the ``admin`` custom
    claim on its Firebase Auth account, checked on the console's every request. Logged."""
    operator = _operator(operator)
    uid = find_user(deps, who)
    if deps.identity.person(uid) is None:
        raise UnknownUser(f"{who} has no Firebase Auth account to sign in with")
    person = deps.identity.set_admin_claim(uid, grant)
    deps.store.add_ops_log({"action": "support_access_granted" if grant else "support_access_revoked",
                            "userId": uid, "operator": operator})
    return {"uid": uid, "email": person.email, "admin": person.claims.get("admin") is True}


# --- checks ----------------------------------------------------------------------------------

def reconcile(deps, queue, hours: int, on_progress: Callable | None = None) -> Verdict:
    """Compare the last hours of Stripe with our records; a missed fulfilment is enqueued, so
    only the other findings need an operator (ok False)."""
    report = reconcile_with_stripe(deps, queue, hours=hours, on_progress=on_progress)
    return Verdict(report.as_dict(), ok=all(f["kind"] == "missed_fulfilment" for f in report.findings))


def audit(deps, on_progress: Callable | None = None) -> Verdict:
    """Check every balance against its ledger; each violation raises an alert (ok False)."""
    report = audit_ledger(deps, on_progress=on_progress)
    audit_alerts(deps, report)
    return Verdict({"users": report.users_checked, "entries": report.entries_checked,
                    "violations": [v.as_dict() for v in report.violations]}, ok=report.ok)


def user_summary(deps, user_id: str, entries: int = 10) -> dict:
    """Balance and totals, the user document (alerts, freezes) and the last ledger entries."""
    return {**accounts.balance(deps, user_id), "user": deps.store.get_user(user_id),
            "entries": accounts.transactions(deps, user_id, entries)["entries"]}
