"""The one registry of Stripe event handlers: which event types tokenbank acts on, and how.

The web tier asks ``is_handled`` before it enqueues; the worker asks ``handler_for`` to
dispatch. Handlers register themselves with ``@handles(...)`` in their modules, which
``_load`` imports once, so there is exactly one table and one answer to "is this handled".
"""
from __future__ import annotations

from typing import Callable

from core.domain.stripe_events import StripeEvent
from core.outcome import Outcome

Handler = Callable[[object, StripeEvent], Outcome]
_HANDLERS: dict[str, Handler] = {}


def handles(*event_types: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            if event_type in _HANDLERS:
                raise RuntimeError(f"{event_type} already has a handler")
            _HANDLERS[event_type] = handler
        return handler
    return register


def _load() -> dict[str, Handler]:
    # Imported here, not at the top: the handler modules import ``handles`` from this one.
    from core.handlers import checkout, disputes, plans, refunds  # noqa: F401  (they register)
    return _HANDLERS


def handler_for(event_type: str) -> Handler | None:
    return _load().get(event_type)


def is_handled(event_type: str) -> bool:
    return event_type in _load()


def handled_types() -> frozenset[str]:
    return frozenset(_load())


def process_stripe_event(deps, payload: str) -> Outcome:
    """Handle one verified Stripe event body (the worker's entry point): parse it once into a
    typed event and hand it to its registered handler; other types are recorded ``ignored``."""
    from core.domain.records import IGNORED, EventRef
    from core.domain.stripe_events import parse_event

    event = parse_event(payload)
    handler = handler_for(event.type)
    if handler is None:
        deps.uow.run(lambda tx: tx.put(EventRef(event.id, event.type).record(IGNORED, None)))
        return Outcome("ignored")
    return handler(deps, event)
