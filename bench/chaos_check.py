"""Quiescence, then the proof: what Firestore holds, compared with what was sent and accepted.

No reconciliation runs: what is checked is what the inbox, the sweeper and the workers did alone.
"""
from __future__ import annotations

import collections
import json
import time

from google.cloud.firestore_v1.base_query import FieldFilter

FINAL = ("processed", "ignored", "rejected", "dead_lettered")
SWEEP_TASK = "tokenbank.jobs.sweep_inbox"


def count(db, collection: str, field: str | None = None, value=None) -> int:
    query = db.collection(collection)
    if field:
        query = query.where(filter=FieldFilter(field, "==", value))
    return int(query.count().get()[0][0].value)


def queued_jobs(broker, queue: str) -> int:
    """Messages waiting in the worker's queue, not counting beat's periodic inbox sweeps."""
    jobs = 0
    for key in [queue] + [f"{queue}\x06\x16{p}" for p in (3, 6, 9)]:
        for raw in broker.lrange(key, 0, -1):
            try:
                task = json.loads(raw)["headers"]["task"]
            except (ValueError, KeyError, TypeError):
                task = "?"
            jobs += task != SWEEP_TASK
    return jobs


def wait_quiescent(db, broker, queue: str, ready, settle: float, deadline: float, poll: float = 0.5) -> dict:
    """Wait until no inbox record is ``received``, no job is queued and nothing changes for ``settle`` s.

    ``ready()`` says when the sends and the faults are over. Returns when quiescence began (the
    first poll of the quiet stretch), or None for it if ``deadline`` (epoch seconds) passed.
    """
    stable_since, previous, samples = None, None, []
    while time.time() < deadline:
        if not ready():
            time.sleep(poll)
            continue
        try:
            state = (count(db, "stripe_events", "status", "received"), queued_jobs(broker, queue),
                     count(db, "transactions"), count(db, "stripe_events", "status", "processed"))
        except Exception as exc:  # noqa: BLE001 - a service still recovering: not quiet yet
            samples.append({"t": time.time(), "error": str(exc)[:200]})
            stable_since = previous = None
            time.sleep(poll)
            continue
        now = time.time()
        samples.append({"t": now, "received": state[0], "queued_jobs": state[1], "ledger": state[2],
                        "processed": state[3]})
        quiet = state[0] == 0 and state[1] == 0
        if not quiet:
            stable_since = None
        elif state != previous or stable_since is None:
            stable_since = now
        previous = state
        if stable_since is not None and now - stable_since >= settle:
            return {"quiescent_at": stable_since, "samples": samples}
        time.sleep(poll)
    return {"quiescent_at": None, "samples": samples}


def _docs(db, collection: str, fields: list[str]) -> dict[str, dict]:
    return {s.id: s.to_dict() or {} for s in db.collection(collection).select(fields).stream()}


def verify(db, workload, accepted_event_ids: set[str], spool_len: int) -> dict:
    """Every figure of the proof, and the first examples of each problem."""
    problems: dict[str, list[str]] = collections.defaultdict(list)
    events = _docs(db, "stripe_events", ["status", "type", "outcome", "sweeps", "deliveryCount"])
    purchases = _docs(db, "purchases", ["status", "tokens", "userId", "refundedTokens", "reversedTokens",
                                        "creditAttempts"])
    ledger = _docs(db, "transactions", ["userId", "type", "amount", "checkoutSessionId"])
    users = _docs(db, "users", ["tokenBalance", "totalTokensPurchased", "frozenBy", "debt"])
    disputes = _docs(db, "disputes", ["status", "closed"])
    alerts = _docs(db, "security_alerts", ["type"])

    credits, reversals = collections.defaultdict(list), collections.defaultdict(int)
    ledger_sum = collections.defaultdict(int)
    for entry_id, e in ledger.items():
        ledger_sum[e.get("userId")] += int(e.get("amount") or 0)
        if e.get("type") == "purchase":
            credits[e.get("checkoutSessionId")].append(entry_id)
        elif e.get("type") in ("refund", "dispute_reversal"):
            reversals[e.get("checkoutSessionId")] += -int(e.get("amount") or 0)

    accepted_sessions = {d.session_id for d in workload.deliveries
                         if d.event_id in accepted_event_ids and d.kind in ("purchase", "second_id")}
    f = collections.Counter()
    expected_balance, expected_frozen = collections.Counter(), collections.defaultdict(set)
    for p in workload.purchases:
        n_credits = len(credits.get(p.session_id, []))
        doc = purchases.get(p.session_id) or {}
        if p.session_id not in accepted_sessions:
            f["sessions_never_accepted"] += 1
            continue
        f["sessions_accepted"] += 1
        expected_balance[p.user_id] += p.tokens - p.reversed_tokens
        if n_credits == 1 and doc.get("status") == "fulfilled" and doc.get("tokens") == p.tokens \
                and doc.get("userId") == p.user_id:
            f["credited_once"] += 1
        elif n_credits == 0 or doc.get("status") != "fulfilled":
            f["missing"] += 1
            problems["missing"].append(f"{p.session_id}: status {doc.get('status')!r}, {n_credits} credit entries")
        elif n_credits > 1:
            f["doubled"] += 1
            problems["doubled"].append(f"{p.session_id}: {credits[p.session_id]}")
        else:
            f["wrong_credit"] += 1
            problems["wrong_credit"].append(f"{p.session_id}: {doc}")
        if doc.get("creditAttempts", 1) > 1:
            f["credit_transaction_retried"] += 1
        if p.scenario == "none":
            continue
        f["reversal_purchases"] += 1
        taken = reversals.get(p.session_id, 0)
        on_payment = int(doc.get("refundedTokens") or 0) + int(doc.get("reversedTokens") or 0)
        if taken == p.reversed_tokens == on_payment:
            f["reversals_applied_once"] += 1
        else:
            key = "reversals_doubled" if taken > p.reversed_tokens else "reversals_missing"
            f[key] += 1
            problems[key].append(f"{p.session_id} ({p.scenario}): ledger took {taken}, payment says {on_payment}, "
                                 f"expected {p.reversed_tokens}")
        if p.dispute_id:
            f["disputes"] += 1
            d = disputes.get(p.dispute_id) or {}
            if d.get("status") == p.dispute_status:
                f["disputes_as_expected"] += 1
            else:
                problems["dispute_state"].append(f"{p.dispute_id}: {d.get('status')!r}, expected {p.dispute_status}")
            if p.dispute_status == "needs_response":
                expected_frozen[p.user_id].add(p.dispute_id)

    for uid in set(expected_balance) | set(users):
        doc = users.get(uid) or {}
        balance = doc.get("tokenBalance", 0)
        if balance != ledger_sum.get(uid, 0):
            f["balance_not_ledger"] += 1
            problems["balance_not_ledger"].append(f"{uid}: balance {balance}, ledger {ledger_sum.get(uid, 0)}")
        if balance != expected_balance.get(uid, 0) or doc.get("totalTokensPurchased", 0) != balance:
            f["balance_not_expected"] += 1
            problems["balance_not_expected"].append(f"{uid}: balance {balance}, purchased "
                                                    f"{doc.get('totalTokensPurchased')}, expected "
                                                    f"{expected_balance.get(uid, 0)}")
        if set(doc.get("frozenBy") or {}) != expected_frozen.get(uid, set()):
            f["frozen_wrong"] += 1
            problems["frozen_wrong"].append(f"{uid}: frozenBy {sorted(doc.get('frozenBy') or {})}, expected "
                                            f"{sorted(expected_frozen.get(uid, set()))}")
    f["users"] = len(set(expected_balance) | set(users))

    statuses = collections.Counter(e.get("status") for e in events.values())
    missing_records = [i for i in accepted_event_ids if i not in events]
    for i in missing_records[:10]:
        problems["inbox_record_missing"].append(i)
    for i, e in events.items():
        if e.get("status") not in ("processed",):
            problems[f"inbox_{e.get('status')}"].append(f"{i}: {e.get('type')} outcome {e.get('outcome')!r}")
    alert_types = collections.Counter(a.get("type") for a in alerts.values())
    ledger_types = collections.Counter(e.get("type") for e in ledger.values())
    known = {p.session_id for p in workload.purchases}
    strays = [i for i, e in ledger.items() if e.get("checkoutSessionId") not in known]
    return {
        "figures": dict(f), "inbox_statuses": dict(statuses), "inbox_records": len(events),
        "accepted_event_ids": len(accepted_event_ids), "inbox_records_missing": len(missing_records),
        "inbox_swept_records": sum(1 for e in events.values() if e.get("sweeps")),
        "inbox_sweeps": sum(int(e.get("sweeps") or 0) for e in events.values()),
        "inbox_max_sweeps_of_one_record": max((int(e.get("sweeps") or 0) for e in events.values()), default=0),
        "inbox_outcomes": dict(collections.Counter(e.get("outcome") for e in events.values())),
        "deliveries_per_record": dict(collections.Counter(e.get("deliveryCount") for e in events.values())),
        "ledger_entries": len(ledger), "ledger_by_type": dict(ledger_types), "ledger_strays": len(strays),
        "alerts_by_type": dict(alert_types), "dead_letter_spool": spool_len,
        "problems": {k: v[:10] + ([f"... {len(v) - 10} more"] if len(v) > 10 else []) for k, v in problems.items()},
        "problem_counts": {k: len(v) for k, v in problems.items()},
    }
