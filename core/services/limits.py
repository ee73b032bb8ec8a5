"""Purchase limits that survive Redis losing its data.

The purchase gate and the velocity windows (the user's paid purchases in the last hour and
day, and their still-open checkouts) live in Redis. If Redis restarts empty they would
silently reset to zero and admit a burst of checkouts. Each user's windows carry a marker;
when it is missing, they are rebuilt from Firestore — the user's payments fulfilled in the
last 24 h and the checkouts tokenbank created that are still open — before the next
checkout is admitted. Members are session ids, so a rebuild never counts one twice.
"""
from __future__ import annotations

import logging

from core.domain.payment import EXPIRED, FAILED, FULFILLED, PACKAGE

log = logging.getLogger("tokenbank.limits")
DAY_SECONDS = 24 * 3600


def ensure_windows(deps, user_id: str) -> None:
    if deps.gate.windows_known(user_id):
        return
    now = deps.clock()
    purchases = [(p["id"], int(_seconds(p.get("fulfilledAt")) * 1000))
                 for p in deps.store.recent_purchases(user_id, now - DAY_SECONDS)
                 if p.get("status") == FULFILLED and (p.get("kind") or PACKAGE) == PACKAGE]
    finished = {FULFILLED, EXPIRED, FAILED}
    open_checkouts = []
    for checkout in deps.store.recent_checkouts(user_id, now - DAY_SECONDS):
        expires = int(checkout.get("expiresAt") or 0)
        if expires > now and (deps.store.get_purchase(checkout["id"]) or {}).get("status") not in finished:
            open_checkouts.append((checkout["id"], expires * 1000))
    deps.gate.restore(user_id, purchases, open_checkouts)
    log.info("purchase windows rebuilt from Firestore", extra={"user_id": user_id, "purchases": len(purchases),
                                                               "open_checkouts": len(open_checkouts)})


def _seconds(value) -> float:
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value or 0)
