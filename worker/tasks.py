"""Celery tasks: thin adapters that call one core function each.

Arguments are JSON primitives (ids and the verified event body as a string).
"""
from __future__ import annotations

from broker import task_names
from core.domain.errors import UnverifiedJob
from core.services.dead_letters import dead_letter_event
from core.services.inbox import INVOICE, SESSION, finished, job_id
from core.services.verified_jobs import verified_event
from core.handlers.checkout import fulfil_session_by_id
from core.handlers.plans import fulfil_invoice_by_id
from core.handlers.registry import process_stripe_event
from worker.base_task import MoneyTask
from worker.celery_app import app
from worker.runtime import deps


@app.task(name=task_names.PROCESS_STRIPE_EVENT, bind=True, base=MoneyTask)
def process_stripe_event_task(self, event_id: str, event_type: str, payload: str, signature: str = "") -> dict:
    def work() -> dict:
        verified_event(deps(), event_id, event_type, payload, signature)  # else UnverifiedJob, never retried
        if finished(deps(), event_id):  # a duplicate job (a sweep, a redelivery): its record already says
            return {"status": "duplicate"}
        return process_stripe_event(deps(), payload).as_dict()

    def give_up(exc: BaseException, attempts: int):
        if not isinstance(exc, UnverifiedJob):  # a forged job is alerted, never kept for replay
            dead_letter_event(deps(), event_id, event_type, payload, exc, attempts, signature)

    return self.run_guarded(work, give_up, {"event_id": event_id, "event_type": event_type})


@app.task(name=task_names.RECORD_IGNORED_EVENT, bind=True, base=MoneyTask)
def record_ignored_event_task(self, event_id: str, event_type: str) -> None:
    # Not money: a record of an event type tokenbank does not act on. Retried, never dead-lettered.
    # The web tier now writes such records in its inbox itself; this task stays registered for
    # jobs a web tier older than the inbox may still publish while a deploy rolls out.
    return self.run_guarded(
        lambda: deps().store.record_event(event_id, {"type": event_type, "status": "ignored"}),
        lambda exc, attempts: None,
        {"event_id": event_id, "event_type": event_type},
    )


@app.task(name=task_names.FULFIL_CHECKOUT_SESSION, bind=True, base=MoneyTask)
def fulfil_checkout_session_task(self, session_id: str, source: str) -> dict:
    """The success page's (and reconciliation's) request: fulfil from what Stripe says."""
    return _durable_job(self, SESSION, session_id, source, lambda: fulfil_session_by_id(deps(), session_id, source))


@app.task(name=task_names.FULFIL_INVOICE, bind=True, base=MoneyTask)
def fulfil_invoice_task(self, invoice_id: str, source: str) -> dict:
    """Reconciliation's request for a plan invoice whose invoice.paid never arrived."""
    return _durable_job(self, INVOICE, invoice_id, source, lambda: fulfil_invoice_by_id(deps(), invoice_id, source))


def _durable_job(task, kind: str, target: str, source: str, work) -> dict:
    """Run a fulfilment request and close its ``jobs`` record: done, or failed after the last try
    (a lost job stays ``requested`` and the inbox sweep publishes it again)."""
    def run() -> dict:
        outcome = work().as_dict()
        deps().store.finish_job(job_id(kind, target), "done", {"outcome": outcome.get("status")})
        return outcome

    def give_up(exc: BaseException, attempts: int):
        deps().store.finish_job(job_id(kind, target), "failed",
                                {"error": f"{type(exc).__name__}: {exc}"[:500], "attempts": attempts})

    return task.run_guarded(run, give_up, {"job": job_id(kind, target), "source": source})


@app.task(name=task_names.JOB_RECONCILE, bind=True, base=MoneyTask, soft_time_limit=600, time_limit=900)
def reconcile_job(self) -> dict:
    from core.services.jobs import scheduled_reconcile
    from broker.event_queue import CeleryEventQueue

    return self.run_guarded(lambda: scheduled_reconcile(deps(), CeleryEventQueue(self.app)),
                            lambda exc, attempts: None, {"job": "reconcile"})


@app.task(name=task_names.JOB_SWEEP_INBOX, bind=True, base=MoneyTask, soft_time_limit=25, time_limit=30)
def sweep_inbox_job(self) -> dict:
    """Enqueue again what the inbox accepted but no worker processed (core/services/inbox.py)."""
    from core.services.inbox import sweep
    from broker.event_queue import CeleryEventQueue

    settings = deps().settings
    with self.app.pool.acquire(block=True, timeout=5) as conn:
        broker = conn.default_channel.client
        return self.run_guarded(
            lambda: sweep(deps(), CeleryEventQueue(self.app), settings.inbox_grace_seconds, broker=broker),
            lambda exc, attempts: None, {"job": "sweep_inbox"})


@app.task(name=task_names.JOB_AUDIT, bind=True, base=MoneyTask, soft_time_limit=1500, time_limit=1800)
def audit_job(self) -> dict:
    from core.services.jobs import scheduled_audit

    return self.run_guarded(lambda: scheduled_audit(deps()), lambda exc, attempts: None, {"job": "audit"})


@app.task(name=task_names.JOB_EXPIRE, bind=True, base=MoneyTask, soft_time_limit=25, time_limit=30)
def expire_job(self) -> dict:
    """Release expired holds and expire expired lots (core/services/expiry.py), every 30 s."""
    from core.services.expiry import run

    return self.run_guarded(lambda: run(deps()), lambda exc, attempts: None, {"job": "expire"})
