"""What support staff may do to a user's account from the console, each confirmed and logged.

Every action runs in two steps. ``review`` checks the request (a reason is always required)
and answers what will happen, with a fresh ``key``; nothing changes. The operator confirms,
and ``perform`` checks the request again, writes the ``ops_log`` entry (operator uid and
email, reason, target, status ``started``) *before* anything can take effect, checks the
account again (it may have changed since the review), runs the existing service, and
completes the entry with the outcome: ``done`` with the result, ``refused`` with the reason,
or ``failed`` with the error (which then propagates: nothing on the money path is
swallowed). So no action takes effect unlogged. The ``key`` makes a confirmation idempotent:
sent again (a double click, a reload) it answers the first outcome from its log entry — one
entry, one effect (the adjustment's idempotency key is derived from it as well).

| action | service | effect |
|---|---|---|
| ``adjust`` | core/services/balance.adjust, actor ``operator:<email>`` | one ``adjustment`` entry, either sign; never takes what holds keep or goes below zero |
| ``release_hold`` | core/services/holds.release | an open hold ends; its tokens are available again |
| ``replay_event`` | operations.replay_dead_letters | a dead-lettered event of this user goes back to the queue |
| ``reset_limits`` | operations.clear_rate_limit | the purchase windows are cleared; the ledger is untouched |

``resend_outgoing`` (resend an outgoing event) belongs to the outgoing-events work on another
branch; ``ACTIONS`` is where it plugs in (a review that shows the event, a perform that resends).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from core.deps import Deps
from core.domain.errors import InvalidRequest, Refusal, UnknownHold
from core.domain.ids import is_valid_doc_id
from core.domain.ledger import MAX_GRANT, reason_text
from core.domain.operators import Operator
from core.services import accounts, balance, holds, operations

_KEY = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger("tokenbank.support")


class Declined(Refusal):
    """The console declines this action (404: nothing of this user by that id; 409: not now)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.message = message
        self.status = status


def _amount(form: Mapping[str, Any]) -> int:
    text = str(form.get("amount") or "").strip().replace("\u2212", "-")
    if not re.fullmatch(r"[+-]?\d{1,7}", text) or int(text) == 0 or abs(int(text)) > MAX_GRANT:
        raise InvalidRequest(f"amount must be a non-zero whole number within ±{MAX_GRANT}, e.g. 50 or -20", "amount")
    return int(text)


def _target(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    if not is_valid_doc_id(value):
        raise Declined(f"no such {name.replace('Id', '')} for this user", 404)
    return value


# --- each action: parse the form (no reads), check the account now (facts to confirm), run ---------

def _adjust_parse(form: Mapping[str, Any]) -> dict:
    return {"amount": _amount(form)}


def _adjust_facts(deps: Deps, user_id: str, params: dict) -> dict:
    now = accounts.balance(deps, user_id)
    return {"balance": now["tokenBalance"], "available": now["available"],
            "balanceAfter": now["tokenBalance"] + params["amount"]}


def _adjust_run(deps, queue, operator: Operator, user_id: str, params: dict, reason: str, key: str) -> dict:
    return balance.adjust(deps, user_id, params["amount"], reason, f"console-{key}", operator.actor).as_dict()


def _release_facts(deps: Deps, user_id: str, params: dict) -> dict:
    hold = deps.store.get_hold(params["holdId"])
    if hold is None or hold.user_id != user_id:
        raise Declined("no such hold for this user", 404)
    if hold.status != "open":
        raise Declined(f"this hold is already {hold.status}: nothing to release")
    return {"amount": hold.amount, "status": hold.status, "expiresAt": hold.expires_at, "holdReason": hold.reason}


def _release_run(deps, queue, operator: Operator, user_id: str, params: dict, reason: str, key: str) -> dict:
    try:
        return holds.release(deps, user_id, params["holdId"], actor=operator.actor)
    except UnknownHold:
        raise Declined("no such hold for this user", 404) from None


def _replay_facts(deps: Deps, user_id: str, params: dict) -> dict:
    event = deps.store.get_event(params["eventId"])
    if event is None or event.get("userId") != user_id:
        raise Declined("no such event for this user", 404)
    if event.get("status") != "dead_lettered":
        raise Declined(f"this event is {event.get('status')}, not dead-lettered: nothing to replay")
    return {"type": event.get("type"), "status": event.get("status"), "error": event.get("error"),
            "attempts": event.get("attempts")}


def _replay_run(deps, queue, operator: Operator, user_id: str, params: dict, reason: str, key: str) -> dict:
    verdict = operations.replay_dead_letters(deps, queue, params["eventId"])
    if not verdict.ok:
        raise Declined(verdict.data.get("error") or "the event could not be replayed")
    return {"eventId": params["eventId"], **verdict.data}


def _reset_facts(deps: Deps, user_id: str, params: dict) -> dict:
    windows = operations.rate_limit(deps, user_id)
    return {"paidPurchases": len(windows["paidPurchases"]), "openCheckouts": len(windows["openCheckouts"])}


def _reset_run(deps, queue, operator: Operator, user_id: str, params: dict, reason: str, key: str) -> dict:
    return {"before": operations.clear_rate_limit(deps, user_id), "ledgerUntouched": True}


@dataclass(frozen=True)
class Action:
    parse: Callable[[Mapping[str, Any]], dict]
    facts: Callable[[Deps, str, dict], dict]
    run: Callable[..., dict]


ACTIONS: dict[str, Action] = {
    "adjust": Action(_adjust_parse, _adjust_facts, _adjust_run),
    "release_hold": Action(lambda form: {"holdId": _target(form, "holdId")}, _release_facts, _release_run),
    "replay_event": Action(lambda form: {"eventId": _target(form, "eventId")}, _replay_facts, _replay_run),
    "reset_limits": Action(lambda form: {}, _reset_facts, _reset_run),
    # "resend_outgoing": Action(...) — with the outgoing-events work (another branch).
}


def _parsed(deps: Deps, action: str, user_id: object, form: Mapping[str, Any]) -> tuple[str, str, dict]:
    if action not in ACTIONS:
        raise Declined(f"unknown action {action!r}", 404)
    if not is_valid_doc_id(user_id) or (deps.store.get_user(user_id) is None
                                        and deps.identity.person(user_id) is None):
        raise Declined("no such user", 404)
    return user_id, reason_text(form.get("reason")), ACTIONS[action].parse(form)


def review(deps: Deps, action: str, user_id: object, form: Mapping[str, Any]) -> dict:
    """What the action would do, for the operator to confirm (nothing changes)."""
    user_id, reason, params = _parsed(deps, action, user_id, form)
    facts = ACTIONS[action].facts(deps, user_id, params)
    return {"action": action, "userId": user_id, "reason": reason, "params": params, "facts": facts,
            "key": uuid.uuid4().hex}


def perform(deps: Deps, queue, operator: Operator, action: str, user_id: object, form: Mapping[str, Any]) -> dict:
    """Run a confirmed action, logged before it takes effect and completed with its outcome."""
    key = form.get("key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidRequest("this confirmation is not valid; review the action again", "key")
    user_id, reason, params = _parsed(deps, action, user_id, form)
    entry_id = log_entry_id(action, user_id, params, key)
    answer = {"action": action, "userId": user_id, "reason": reason, "params": params, "opsLogId": entry_id}
    if not deps.store.start_ops_log(entry_id, {"action": action, "userId": user_id, "reason": reason,
                                               "via": "console", "key": key, "status": "started", **params,
                                               **operator.log_fields()}):
        before = deps.store.get_ops_log(entry_id) or {}
        if before.get("status") == "done":  # this confirmation was sent before: its answer, once
            return {**answer, "result": before.get("result"), "replayed": True}
        if before.get("status") == "started":  # sent twice at once: the first one carries it out
            raise Declined("this confirmation is being carried out already; reload the user's page in a moment")
        # refused or failed before: try again, and record the new outcome in the same entry
    action_ = ACTIONS[action]
    try:
        action_.facts(deps, user_id, params)  # the account may have changed since the review
        result = action_.run(deps, queue, operator, user_id, params, reason, key)
    except Refusal as refused:
        deps.store.finish_ops_log(entry_id, {"status": "refused", "error": str(refused)[:500]})
        _log("refused", action, user_id, operator, entry_id)
        raise
    except Exception as exc:
        _log("failed", action, user_id, operator, entry_id)
        with contextlib.suppress(Exception):  # the error itself propagates, logged or not
            deps.store.finish_ops_log(entry_id, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    deps.store.finish_ops_log(entry_id, {"status": "done", "result": result})
    _log("done", action, user_id, operator, entry_id)
    return {**answer, "result": result, "replayed": False}


def _log(status: str, action: str, user_id: str, operator: Operator, entry_id: str) -> None:
    extra = {"action": action, "user_id": user_id, "operator": operator.email or operator.uid,
             "operator_uid": operator.uid, "ops_log_id": entry_id}
    if status == "failed":
        log.warning("support action %s", status, extra=extra)
    else:
        log.info("support action %s", status, extra=extra)


def log_entry_id(action: str, user_id: str, params: Mapping[str, Any], key: str) -> str:
    """One ops_log entry per confirmation: the same confirmation sent again finds it."""
    target = "|".join(f"{k}={params[k]}" for k in sorted(params))
    return f"console_{action}_" + hashlib.sha256(f"{user_id}\x00{target}\x00{key}".encode()).hexdigest()[:40]
