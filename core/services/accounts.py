"""What a signed-in user may see and ask for: balance, ledger, their purchases."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping

from core import redis_keys
from core.domain.account import Account
from core.domain.lots import expiring
from core.domain.errors import InvalidRequest
from core.services import history
from core.services.checkout import RateLimited
from core.deps import Deps
from core.domain.errors import UnknownPurchase
from core.services.inbox import SESSION, request_fulfilment
from core.errors import EnqueueFailed
from core.domain.ids import is_valid_doc_id
from core.store import InvalidCursor

PAGE_DEFAULT, PAGE_MAX = 20, 100
_DIGITS = re.compile(r"[0-9]{1,4}")
ENTRY_FIELDS = ("type", "amount", "balanceAfter", "createdAt", "packageId", "checkoutSessionId", "reason", "planId",
                "invoiceId", "holdId", "source")
PURCHASE_FIELDS = ("status", "packageId", "tokens", "amountPaid", "currency", "reason", "createdAt", "fulfilledAt")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _frozen_since(account: Account) -> int | None:
    times = [int(info["since"]) for info in account.frozen_by.values()
             if isinstance(info, Mapping) and isinstance(info.get("since"), (int, float))]
    return min(times) if times else None


def balance(deps: Deps, user_id: str) -> dict:
    """The totals, and what is ``available`` (balance − open holds − what expiry is about to
    take), ``held`` by open holds and ``expiring`` (amounts with dates, soonest first);
    ``frozen`` while a payment dispute is open (``frozenSince``: when the first one opened) and
    ``debt``, what reversals took beyond the balance (new credits repay it first)."""
    account = deps.store.get_account(user_id) or Account(user_id)
    now = deps.clock()
    return {"userId": user_id, "tokenBalance": account.balance, "totalTokensPurchased": account.purchased,
            "totalTokensEarned": account.earned, "totalTokensSpent": account.spent,
            "totalTokensExpired": account.expired, "available": account.available(now), "held": account.held(now),
            "expiring": [{"amount": amount, "expiresAt": int(at)} for amount, at in
                         expiring(account.lots.values(), now)],
            "frozen": account.frozen, "frozenSince": _frozen_since(account), "debt": account.debt}


def parse_page_args(limit: object, cursor: object) -> tuple[int, str | None]:
    """``limit``: absent, a whole number, or its decimal digits, 1-100 (a query string's "", " 5", "+5"
    or "1_0", which int() would take, are refused)."""
    if limit is None:
        size = PAGE_DEFAULT
    else:
        digits = isinstance(limit, str) and _DIGITS.fullmatch(limit) is not None
        whole = isinstance(limit, int) and not isinstance(limit, bool)
        if not (digits or whole) or not 1 <= int(limit) <= PAGE_MAX:  # type: ignore[arg-type]
            raise InvalidRequest(f"limit must be an integer from 1 to {PAGE_MAX}", "limit")
        size = int(limit)  # type: ignore[arg-type]
    if cursor in (None, ""):
        return size, None
    if not is_valid_doc_id(cursor):
        raise InvalidRequest("cursor is not valid", "cursor")
    return size, cursor  # type: ignore[return-value]


def transactions(deps: Deps, user_id: str, limit: object = None, cursor: object = None) -> dict:
    size, after = parse_page_args(limit, cursor)
    try:
        entries, next_cursor = deps.store.list_entries(user_id, size, after)
    except InvalidCursor:
        raise InvalidRequest("cursor is not valid", "cursor") from None
    return {"entries": [_entry_view(deps, e) for e in entries], "nextCursor": next_cursor}


def _entry_view(deps: Deps, entry: Mapping[str, Any]) -> dict:
    """One ledger entry as the page shows it: its fields, a label, and the payment whose receipt it links."""
    view = {"id": entry["id"], **{k: _plain(entry.get(k)) for k in ENTRY_FIELDS if entry.get(k) is not None},
            "label": history.label(entry, deps.catalog)}
    receipt = history.receipt_for(entry)
    return view | ({"receiptFor": receipt} if receipt else {})


_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")


def valid_session_id(session_id: object) -> bool:
    """The shape of a Stripe Checkout Session id: cs_ and letters, digits, underscores."""
    return isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id) is not None


def purchase_status(deps: Deps, user_id: str, session_id: object) -> dict | None:
    """The purchase if it exists and is this user's; None otherwise (never another user's)."""
    if not valid_session_id(session_id):
        raise InvalidRequest("session_id is not a Checkout Session id", "session_id")
    purchase: Mapping[str, Any] | None = deps.store.get_purchase(session_id)  # type: ignore[arg-type]
    if purchase is None or purchase.get("userId") != user_id:
        return None
    return {"sessionId": session_id, **{k: _plain(purchase.get(k)) for k in PURCHASE_FIELDS if k in purchase}}


def owns_session(deps: Deps, user_id: str, session_id: str) -> bool:
    """Whether tokenbank started this Checkout Session for this user (its checkout record, or
    the purchase record of a session started before checkout records existed)."""
    for record in (deps.store.get_checkout(session_id), deps.store.get_purchase(session_id)):
        if record is not None:
            return record.get("userId") == user_id
    return False


def request_confirmation(deps: Deps, queue, user_id: str, session_id: object) -> None:
    """The success page asks the workers to fulfil from what Stripe says (idempotent).

    Only for a session this user started (anything else: UnknownPurchase, a quiet 404, and
    no Stripe call); bounded per user so it cannot make us call Stripe without limit.
    """
    if not valid_session_id(session_id):
        raise InvalidRequest("session_id is not a Checkout Session id", "session_id")
    key = redis_keys.success_checks(user_id)
    pipe = deps.redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 60, nx=True)
    count = int(pipe.execute()[0])
    if count > deps.settings.confirmations_per_minute:
        raise RateLimited(int(deps.redis.ttl(key)) or 60, "Too many status checks; please wait a minute.")
    if not owns_session(deps, user_id, session_id):
        raise UnknownPurchase("no such purchase for this account")
    try:
        request_fulfilment(deps, queue, SESSION, session_id, "success_page")
    except Exception as exc:  # Firestore did not take the request: 503, the page asks again
        raise EnqueueFailed(str(exc)) from exc
