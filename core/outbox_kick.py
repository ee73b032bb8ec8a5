"""After a commit that wrote outgoing events: ask for their fan-out now, rather than at the next sweep.

The unit of work (core/adapters/firestore_uow.py) calls the kick with the accounts whose new
events it committed; an entry point connects what publishes the fan-out job (the web tier, the
worker and the CLI connect ``CeleryEventQueue.request_fan_out``). The kick only shortens the
wait: the events are already committed with their change, and the outbox sweep (beat, every
``OUTBOX_SWEEP_EVERY_SECONDS``) fans out whatever no kick did. So a kick that fails is logged
and counted, never raised: the money change it follows has committed and its answer stands. After
a failure the kick rests for ``QUIET_SECONDS``, so a broker outage never slows every spend.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from core import metrics

log = logging.getLogger("tokenbank.outbox")
QUIET_SECONDS = 30.0


class OutboxKick:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._publish: Callable[[str, int], None] | None = None
        self._clock = clock
        self._quiet_until = 0.0

    def connect(self, publish: Callable[[str, int], None]) -> None:
        """``publish(user_id, up_to_seq)`` asks for one account's fan-out (the last connection wins)."""
        self._publish = publish

    def __call__(self, emitted: dict[str, int]) -> None:
        """``emitted``: each account whose new events were committed, with the last one's seq."""
        if self._publish is None or self._clock() < self._quiet_until:
            return
        for user_id, seq in sorted(emitted.items()):
            try:
                self._publish(user_id, seq)
            except Exception as exc:  # the sweep fans it out instead
                metrics.OUTBOX_KICK_FAILURES.inc()
                self._quiet_until = self._clock() + QUIET_SECONDS
                log.warning("could not ask for a fan-out (the sweep will): %s: %s", type(exc).__name__, exc,
                            extra={"user_id": user_id})
                return
