"""The support dashboard: the last 24 hours, hour by hour, from Firestore.

Five series of 24 hourly counts (UTC hours, the current one last): webhooks received (inbox
records by ``receivedAt``), credits (``purchase`` and ``subscription_allowance`` ledger
entries by ``createdAt``), rejections and dead letters (inbox records received in the hour
whose status is now ``rejected`` / ``dead_lettered``), and alerts raised (``security_alerts``
by ``createdAt``). Alerts have no open/closed state: every alert of the window counts.

Three bounded queries (newest first, at most ``MAX_DOCS`` documents each, only the fields
counted). When a query reaches its bound the series says ``truncated``: its older hours
are then undercounted, and the page says so instead of showing a wrong total.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from core.deps import Deps
from core.domain.ledger import ALLOWANCE, PURCHASE
from core.services.support import unix

HOURS = 24
MAX_DOCS = 5000
CREDIT_TYPES = (PURCHASE, ALLOWANCE)


def _hourly(times: Iterable[float | None], start: float) -> list[int]:
    counts = [0] * HOURS
    for at in times:
        if at is not None and at >= start:
            index = int((at - start) // 3600)
            if index < HOURS:
                counts[index] += 1
    return counts


def _series(key: str, title: str, times: list, start: float, truncated: bool, **extra) -> dict:
    counts = _hourly(times, start)
    return {"key": key, "title": title, "counts": counts, "total": sum(counts), "truncated": truncated, **extra}


def last_24_hours(deps: Deps) -> dict:
    now = deps.clock()
    start = (now // 3600 + 1) * 3600 - HOURS * 3600  # the hour 23 hours ago, so the current hour is the last
    events = deps.store.events_since(start, MAX_DOCS)
    credits = deps.store.credits_since(start, CREDIT_TYPES, MAX_DOCS)
    alerts = deps.store.alerts_since(start, MAX_DOCS)
    events_full, credits_full, alerts_full = (len(x) >= MAX_DOCS for x in (events, credits, alerts))

    def received(status: str | None = None) -> list:
        return [unix(e.get("receivedAt")) for e in events if status is None or e.get("status") == status]

    dead = [e for e in events if e.get("status") == "dead_lettered"]
    return {
        "start": start,
        "end": start + HOURS * 3600,
        "hours": [start + i * 3600 for i in range(HOURS)],
        "series": [
            _series("webhooks", "Webhooks received", received(), start, events_full),
            _series("credits", "Credits (purchases and plan allowances)", [unix(c.get("createdAt")) for c in credits],
                    start, credits_full, tokens=sum(int(c.get("amount") or 0) for c in credits)),
            _series("rejections", "Rejections", received("rejected"), start, events_full),
            _series("dead_letters", "Dead letters", received("dead_lettered"), start, events_full),
            _series("alerts", "Alerts raised", [unix(a.get("createdAt")) for a in alerts], start, alerts_full),
        ],
        "eventStatuses": dict(Counter(e.get("status") or "unknown" for e in events).most_common()),
        "alertTypes": dict(Counter(a.get("type") or "unknown" for a in alerts).most_common()),
        "deadLetters": [{"id": e["id"], "type": e.get("type"), "userId": e.get("userId"),
                         "receivedAt": unix(e.get("receivedAt"))} for e in dead[:50]],
        "maxDocs": MAX_DOCS,
    }
