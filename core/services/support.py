"""What support staff see of one user: who it is, the money, and everything that moved it.

``user_view`` (for a uid core/services/support_access.py ``find_user`` found) gathers, read
only, what answers "I paid and got nothing" and "why did my tokens go down": the balance with
what is available and held (core/services/accounts.py), the lots and holds, one page of the ledger (newest first, with every reference: actor, reason,
Stripe event, hold, lots moved), the purchases with their Stripe ids and status, the user's
inbox records (dead letters included), alerts, disputes, purchase-limit windows, and what
operators did to the account (``ops_log``). Every list is bounded. Times are unix seconds.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Iterable, Mapping

from core.deps import Deps
from core.domain.errors import InvalidRequest, UnknownUser
from core.domain.ids import is_valid_doc_id
from core.domain.operators import is_support
from core.services import accounts, operations
from core.store import InvalidCursor

LEDGER_PAGE = 25
LIST_LIMIT = 50
# The ledger entry's own fields; every other field is a reference support may need to see.
_ENTRY_HIDDEN = ("userId", "requestHash")
_PURCHASE_FIELDS = ("kind", "status", "packageId", "planId", "tokens", "amountPaid", "currency", "paymentIntentId",
                    "subscriptionId", "invoiceId", "ledgerEntryId", "reason", "detail", "refundedCents",
                    "refundedTokens", "reversedTokens", "fulfilledBy", "createdAt", "updatedAt", "fulfilledAt")


def unix(value: Any) -> float | None:
    """A stored time (Firestore timestamp, datetime or unix seconds) as unix seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _docs(docs: Iterable[Mapping[str, Any]], fields: Iterable[str] | None = None, hidden: Iterable[str] = ()) -> list:
    wanted, hide = (tuple(fields) if fields is not None else None), set(hidden)
    return [{"id": d["id"], **{k: _plain(v) for k, v in d.items() if k != "id" and k not in hide
                               and (wanted is None or k in wanted) and v is not None}} for d in docs]


def user_view(deps: Deps, user_id: object, cursor: object = None) -> dict:
    """Everything support sees of one user (UnknownUser if neither Auth nor Firestore knows it)."""
    if not is_valid_doc_id(user_id):
        raise UnknownUser("no such user")
    person = deps.identity.person(user_id)
    user_doc = deps.store.get_user(user_id)
    if person is None and user_doc is None:
        raise UnknownUser(f"no account with the user id {user_id}")
    now = deps.clock()
    view = {
        "userId": user_id,
        "account": _account(deps, person),
        "balance": accounts.balance(deps, user_id),
        "debt": int((user_doc or {}).get("debt") or 0),
        "frozenBy": _plain(dict((user_doc or {}).get("frozenBy") or {})),
        "subscription": _plain((user_doc or {}).get("subscription")),
        "lots": _lots(deps, user_id, now),
        "holds": _holds(deps, user_id, now),
        "ledger": _ledger(deps, user_id, cursor),
        "purchases": _docs(deps.store.user_purchases(user_id, LIST_LIMIT), _PURCHASE_FIELDS),
        "events": [{**e, "replayable": e.get("status") == "dead_lettered"}
                   for e in _docs(deps.store.user_events(user_id, LIST_LIMIT))],
        "alerts": _docs(deps.store.user_alerts(user_id, LIST_LIMIT)),
        "disputes": _docs(deps.store.user_disputes(user_id, LIST_LIMIT)),
        "limits": _limits(deps, user_id),
        "opsLog": _docs(deps.store.user_ops_log(user_id, LIST_LIMIT)),
        # Outgoing events (resend) come with the outgoing-events work (another branch): see
        # core/services/support_actions.py, "resend_outgoing".
        "outgoing": None,
        "listLimit": LIST_LIMIT,
    }
    return {**view, "attention": attention(view)}


def attention(view: Mapping[str, Any]) -> list[str]:
    """What support should look at first: money paid and not (yet) credited, frozen, owed."""
    notes = []
    for status, text in (("dead_lettered", "dead-lettered: processing gave up, so what it carries (a payment?) did "
                                           "not land; replay it once the cause is fixed"),
                         ("received", "still waiting to be processed")):
        found = [e["id"] for e in view["events"] if e.get("status") == status]
        if found:
            notes.append(f"{len(found)} Stripe event(s) {text}: {', '.join(found[:5])}")
    for p in view["purchases"]:
        if p.get("status") in ("rejected", "pending"):
            why = f" ({p.get('reason')})" if p.get("reason") else ""
            notes.append(f"Purchase {p['id']} is {p['status']}{why}: " + (
                "paid but not credited (see the runbook, Purchase rejected)" if p["status"] == "rejected"
                else "the bank has not confirmed the payment yet"))
    if view["frozenBy"]:
        notes.append(f"Spending is frozen by {len(view['frozenBy'])} open dispute(s)")
    if view["debt"]:
        notes.append(f"The account owes {view['debt']} tokens (a refund or lost dispute took more than was left)")
    return notes


def _account(deps: Deps, person) -> dict | None:
    if person is None:
        return None  # an account only Firestore knows (e.g. made by a backend's grant)
    return {"email": person.email, "emailVerified": person.email_verified, "disabled": person.disabled,
            "createdAt": person.created_at, "lastSignInAt": person.last_sign_in_at,
            "support": is_support(person, deps.settings.admin_uids, deps.settings.admin_emails)}


def _lots(deps: Deps, user_id: str, now: float) -> list[dict]:
    """Every open lot (the account keeps them), then the newest of the rest."""
    account = deps.store.get_account(user_id)
    found = {lot.id: lot for lot in deps.store.user_lots(user_id, LIST_LIMIT)}
    found.update(account.lots if account is not None else {})
    lots = sorted(found.values(), key=lambda lot: (not lot.open, -lot.created_at, lot.id))
    return [{**{k: v for k, v in dataclasses.asdict(lot).items() if k != "user_id"},
             "open": lot.open, "live": lot.live(now)} for lot in lots]


def _holds(deps: Deps, user_id: str, now: float) -> list[dict]:
    """Every open hold, then the newest of the rest."""
    found = {h.id: h for h in deps.store.user_holds(user_id, LIST_LIMIT)}
    found.update({h.id: h for h in deps.store.open_holds(user_id)})
    holds = sorted(found.values(), key=lambda h: (h.status != "open", -h.created_at, h.id))
    return [{"id": h.id, "amount": h.amount, "status": h.status, "expiresAt": h.expires_at, "placedAt": h.created_at,
             "reason": h.reason, "actor": h.actor, "captured": h.captured, "released": h.released,
             "entryId": h.entry_id, "pastExpiry": h.expired_at(now), "releasable": h.status == "open"}
            for h in holds]


def _ledger(deps: Deps, user_id: str, cursor: object) -> dict:
    after = None
    if cursor not in (None, ""):
        if not is_valid_doc_id(cursor):
            raise InvalidRequest("cursor is not valid", "cursor")
        after = cursor
    try:
        entries, next_cursor = deps.store.list_entries(user_id, LEDGER_PAGE, after)
    except InvalidCursor:
        raise InvalidRequest("cursor is not valid", "cursor") from None
    return {"entries": _docs(entries, hidden=_ENTRY_HIDDEN), "nextCursor": next_cursor, "cursor": after}


def _limits(deps: Deps, user_id: str) -> dict:
    windows = operations.rate_limit(deps, user_id)
    return {"paidPurchases": [{"id": m, "at": score / 1000} for m, score in windows["paidPurchases"]],
            "openCheckouts": [{"id": m, "expiresAt": score / 1000} for m, score in windows["openCheckouts"]],
            "perHour": deps.settings.purchases_per_hour, "perDay": deps.settings.purchases_per_day}
