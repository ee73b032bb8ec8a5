"""The worker process's dependencies, built once per process after the fork."""
from __future__ import annotations

import logging
import os

from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_ready

from core.bootstrap import bootstrap
from core.deps import Deps

log = logging.getLogger("tokenbank.worker")
_deps: Deps | None = None
_pid: int | None = None


def deps() -> Deps:
    """This process's Deps; built at process init (prefork) or on first use (solo/threads)."""
    global _deps, _pid
    if _deps is None or _pid != os.getpid():
        from broker.event_queue import CeleryEventQueue
        from worker.celery_app import app

        _deps, _pid = bootstrap(app.tokenbank_settings), os.getpid()
        # After a commit that wrote outgoing events, ask for their fan-out (core/outbox_kick.py).
        _deps.outbox_kick.connect(CeleryEventQueue(app).request_fan_out)
    return _deps


@worker_init.connect
def _serve_metrics(**_):
    """The worker's main process serves the pool's merged metrics on WORKER_METRICS_PORT."""
    port = os.environ.get("WORKER_METRICS_PORT")
    if port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(int(port), addr=os.environ.get("WORKER_METRICS_HOST", "0.0.0.0"), registry=registry)


@worker_ready.connect
def _sweep_on_start(sender=None, **_):
    """A worker that starts (or restarts after a crash) first asks for an inbox sweep."""
    from broker.task_names import JOB_SWEEP_INBOX

    if JOB_SWEEP_INBOX not in sender.app.tasks:
        return  # an app without the sweep (the benchmark's no-op worker)
    try:
        sender.app.send_task(JOB_SWEEP_INBOX, queue=sender.app.conf.task_default_queue)
    except Exception as exc:  # the broker is down: beat asks again within INBOX_SWEEP_EVERY_SECONDS
        log.warning("could not ask for an inbox sweep at start: %s", exc)


@worker_process_shutdown.connect
def _forget_dead_process(pid=None, **_):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


@worker_process_init.connect
def _build_on_process_start(**_):
    """Build the clients and open their connections before the first task arrives."""
    built = deps()
    for name, probe in (("redis", built.redis.ping), ("firestore", built.store.ping)):
        try:
            probe()
        except Exception as exc:  # a service still starting: the first task retries as usual
            log.warning("warm-up of %s failed: %s", name, exc)
