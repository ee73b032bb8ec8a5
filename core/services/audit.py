"""The ledger audit: every invariant a balance must keep, checked per user.

For every user:
- ``tokenBalance`` equals the sum of the user's ledger amounts;
- each total equals the sum of its entry types (core.domain.ledger);
- no entry was ever changed after it was written (Firestore's own update time equals its
  create time) and each entry's amount has the sign its type requires;
- every fulfilled payment has exactly one credit entry (a package's ``purchase``, a plan
  invoice's ``subscription_allowance``), and every purchase entry belongs to a fulfilled
  purchase of the same user;
- a negative balance exists only with recorded debt (``debt == -tokenBalance``);
- lots and holds keep theirs (core/services/audit_lots.py).

``check_user`` is pure; ``audit`` walks users in bounded batches through the store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from core.domain.ledger import ENTRY_TYPES, TOTAL_NAMES, total_delta
from core.services.audit_lots import check_lots_and_holds

TOTALS = TOTAL_NAMES


@dataclass(frozen=True)
class Violation:
    user_id: str
    check: str
    expected: Any
    actual: Any
    detail: str = ""

    def as_dict(self) -> dict:
        return {"userId": self.user_id, "check": self.check, "expected": self.expected, "actual": self.actual,
                "detail": self.detail}


@dataclass
class AuditReport:
    users_checked: int = 0
    entries_checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def check_user(user_id: str, user: Mapping[str, Any] | None, entries: Iterable[Mapping[str, Any]],
               purchases: Iterable[Mapping[str, Any]], lots: Iterable[Any] = (), holds: Iterable[Any] = (),
               now: float = 0.0) -> list[Violation]:
    """``entries`` carry ``id``, their fields and ``_created``/``_updated`` times;
    ``purchases`` carry ``id`` (the session id) and their fields."""
    user = user or {}
    entries, purchases = list(entries), list(purchases)
    found: list[Violation] = []

    def violation(check, expected, actual, detail=""):
        found.append(Violation(user_id, check, expected, actual, detail))

    total_sums = {name: 0 for name in TOTALS}
    for entry in entries:
        kind, amount = entry.get("type"), entry.get("amount")
        if kind not in ENTRY_TYPES or isinstance(amount, bool) or not isinstance(amount, int):
            violation("entry_shape", "known type and integer amount", f"{kind!r} {amount!r}", entry.get("id", ""))
            continue
        sign = ENTRY_TYPES[kind].sign
        if (sign > 0 and amount <= 0) or (sign < 0 and amount >= 0) or amount == 0:
            violation("entry_sign", f"{kind} amount with sign {sign:+d}", amount, entry["id"])
        if entry.get("_updated") is not None and entry.get("_updated") != entry.get("_created"):
            violation("entry_changed", entry.get("_created"), entry.get("_updated"), entry["id"])
        name, delta = total_delta(kind, amount)
        total_sums[name] += delta
    ledger_sum = sum(e["amount"] for e in entries if isinstance(e.get("amount"), int))
    balance = int(user.get("tokenBalance") or 0)
    if balance != ledger_sum:
        violation("balance_equals_ledger", ledger_sum, balance)
    for name in TOTALS:
        if int(user.get(name) or 0) != total_sums[name]:
            violation(f"{name}_equals_entries", total_sums[name], int(user.get(name) or 0))
    debt = int(user.get("debt") or 0)
    if debt != max(0, -balance):
        violation("negative_balance_has_debt", max(0, -balance), debt)

    # A package's credit is a ``purchase`` entry keyed by its session; a plan invoice's is a
    # ``subscription_allowance`` entry keyed by the invoice (allowances credited before plan
    # invoices had payment records have none, so only that direction is checked for them).
    credit_entries: dict[str, int] = {}
    for entry in entries:
        if entry.get("type") in ("purchase", "subscription_allowance"):
            pid = entry.get("checkoutSessionId") if entry["type"] == "purchase" else entry.get("invoiceId")
            credit_entries[pid] = credit_entries.get(pid, 0) + 1
    fulfilled = {p["id"] for p in purchases if p.get("status") == "fulfilled"}
    for pid in sorted(fulfilled):
        if credit_entries.get(pid, 0) != 1:
            violation("fulfilled_purchase_has_one_entry", 1, credit_entries.get(pid, 0), pid)
    purchase_ids = {e.get("checkoutSessionId") for e in entries if e.get("type") == "purchase"}
    for sid in sorted(map(str, purchase_ids - fulfilled)):
        violation("purchase_entry_has_fulfilled_purchase", "fulfilled", "missing or not fulfilled", sid)
    check_lots_and_holds(user_id, user, entries, lots, holds, now, violation)
    return found


def audit(deps, user_ids: Iterable[str] | None = None, batch_size: int = 200, on_progress=None) -> AuditReport:
    """Check every user (or ``user_ids``), ``batch_size`` users per page."""
    report = AuditReport()
    store = deps.store
    ids = iter(user_ids) if user_ids is not None else store.iter_user_ids(batch_size)
    for user_id in ids:
        user, entries, purchases = store.user_ledger(user_id)
        report.violations.extend(check_user(user_id, user, entries, purchases, store.user_lots(user_id),
                                            store.user_holds(user_id), deps.clock()))
        report.users_checked += 1
        report.entries_checked += len(entries)
        if on_progress is not None:
            on_progress(report)
    return report
