"""The worker process's dependencies, built once per process after the fork."""
from __future__ import annotations

import logging
import os

from celery.signals import worker_process_init

from core.bootstrap import bootstrap
from core.deps import Deps

log = logging.getLogger("tokenbank.worker")
_deps: Deps | None = None
_pid: int | None = None


def deps() -> Deps:
    """This process's Deps; built at process init (prefork) or on first use (solo/threads)."""
    global _deps, _pid
    if _deps is None or _pid != os.getpid():
        from worker.celery_app import app

        _deps, _pid = bootstrap(app.tokenbank_settings), os.getpid()
    return _deps


@worker_process_init.connect
def _build_on_process_start(**_):
    """Build the clients and open their connections before the first task arrives."""
    built = deps()
    for name, probe in (("redis", built.redis.ping), ("firestore", built.store.ping)):
        try:
            probe()
        except Exception as exc:  # a service still starting: the first task retries as usual
            log.warning("warm-up of %s failed: %s", name, exc)
