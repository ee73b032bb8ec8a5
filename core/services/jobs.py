"""Scheduled jobs (Celery beat): reconciliation every 15 minutes, the ledger audit daily.

Each run first claims its time slot in Redis (SET NX), so even if two beat processes are
started by mistake, each slot runs once.
"""
from __future__ import annotations

import logging
import time

from core import metrics, redis_keys
from core.services.audit import audit
from core.services.reconcile import reconcile
from core.domain.records import Alert

log = logging.getLogger("tokenbank.jobs")
RECONCILE_EVERY_SECONDS = 15 * 60
AUDIT_EVERY_SECONDS = 24 * 3600


def claim_slot(deps, job: str, period_seconds: int) -> bool:
    slot = int(deps.clock()) // period_seconds
    return bool(deps.redis.set(redis_keys.job_slot(job, slot), "1", nx=True, ex=period_seconds * 2))


def scheduled_reconcile(deps, queue) -> dict:
    if not claim_slot(deps, "reconcile", RECONCILE_EVERY_SECONDS):
        return {"skipped": "slot already claimed"}
    return reconcile(deps, queue).as_dict()


def audit_alerts(deps, report) -> int:
    day = time.strftime("%Y%m%d", time.gmtime(deps.clock()))
    for v in report.violations:
        metrics.AUDIT_VIOLATIONS.labels(v.check).inc()
        deps.store.add_alert(Alert(f"audit_{day}_{v.user_id}_{v.check}", "ledger_audit_violation", v.user_id,
                                   v.as_dict()))
        log.error("ledger audit violation", extra=v.as_dict())
    return len(report.violations)


def scheduled_audit(deps) -> dict:
    if not claim_slot(deps, "audit", AUDIT_EVERY_SECONDS):
        return {"skipped": "slot already claimed"}
    report = audit(deps)
    return {"users": report.users_checked, "entries": report.entries_checked,
            "violations": audit_alerts(deps, report)}
