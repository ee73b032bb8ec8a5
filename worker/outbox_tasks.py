"""Celery tasks of the outgoing events: thin adapters that call one core function each.

Arguments are JSON primitives (a user id, an endpoint id). Every task is a MoneyTask
(worker/base_task.py): a transient failure (Firestore or Redis busy or down) retries with
backoff; after the last try nothing is lost, because the state is in Firestore: the outbox
sweep fans out undispatched events and asks every endpoint for a run again. Receivers'
failures are not task failures: they are retried by the delivery's own schedule
(core/services/deliveries.py), never by Celery.
"""
from __future__ import annotations

from broker import task_names
from broker.event_queue import CeleryEventQueue
from core.services import deliveries, outbox
from worker.base_task import MoneyTask
from worker.celery_app import app
from worker.runtime import deps


def _nothing(exc: BaseException, attempts: int) -> None:
    """Nothing to dead-letter: the outbox and the queue of deliveries are in Firestore."""


@app.task(name=task_names.OUTBOX_FAN_OUT, bind=True, base=MoneyTask)
def fan_out_task(self, user_id: str, up_to_seq: int | None = None) -> dict:
    """Queue the account's new events for every endpoint subscribed to them (core/services/outbox.py)."""
    return self.run_guarded(
        lambda: outbox.fan_out_account(deps(), CeleryEventQueue(self.app), user_id, up_to=up_to_seq), _nothing,
        {"user_id": user_id, "job": "fan_out"})


@app.task(name=task_names.OUTBOX_DELIVER, bind=True, base=MoneyTask)
def deliver_task(self, endpoint_id: str) -> dict:
    """Send the endpoint's queue in order, while it accepts (core/services/deliveries.py)."""
    return self.run_guarded(lambda: deliveries.deliver_endpoint(deps(), CeleryEventQueue(self.app), endpoint_id),
                            _nothing, {"endpoint_id": endpoint_id, "job": "deliver"})


@app.task(name=task_names.JOB_SWEEP_OUTBOX, bind=True, base=MoneyTask, soft_time_limit=40, time_limit=50)
def sweep_outbox_job(self) -> dict:
    """Beat, every OUTBOX_SWEEP_EVERY_SECONDS: fan out what no kick did, run every endpoint not waiting."""
    return self.run_guarded(lambda: outbox.sweep(deps(), CeleryEventQueue(self.app)), _nothing,
                            {"job": "sweep_outbox"})
