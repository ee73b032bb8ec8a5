"""Any order of any deliveries, duplicates included, credits each paid session exactly once."""
from collections import Counter

from hypothesis import given, settings, strategies as st

from core.handlers.registry import process_stripe_event
from core.domain.stripe_events import (
    CHECKOUT_ASYNC_FAILED, CHECKOUT_ASYNC_SUCCEEDED, CHECKOUT_COMPLETED, CHECKOUT_EXPIRED,
)
from tests.unit.fakes import PACKAGES, FakeLedgerStore, checkout_session, event_json, fake_redis, make_deps

KINDS = {  # kind: (event type, payment_status, session status)
    "completed_paid": (CHECKOUT_COMPLETED, "paid", "complete"),
    "completed_unpaid": (CHECKOUT_COMPLETED, "unpaid", "complete"),
    "async_succeeded": (CHECKOUT_ASYNC_SUCCEEDED, "paid", "complete"),
    "async_failed": (CHECKOUT_ASYNC_FAILED, "unpaid", "complete"),
    "expired": (CHECKOUT_EXPIRED, "unpaid", "expired"),
}
PAID = {"completed_paid", "async_succeeded"}

sessions = st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.sampled_from(sorted(PACKAGES))),
                    min_size=1, max_size=5)


@st.composite
def scenarios(draw):
    owners = draw(sessions)
    # (session, kind, copy): the same triple twice is a redelivery of one event; another copy is a new event id.
    delivery = st.tuples(st.integers(0, len(owners) - 1), st.sampled_from(sorted(KINDS)), st.integers(0, 1))
    return owners, draw(st.lists(delivery, min_size=1, max_size=25))


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_balances_match_the_ledger_and_each_paid_session_is_credited_once(scenario):
    owners, deliveries = scenario
    store = FakeLedgerStore()
    deps = make_deps(store, fake_redis())
    credited = Counter()
    for s, kind, copy in deliveries:
        event_type, payment_status, status = KINDS[kind]
        user, package = owners[s]
        session = checkout_session(user, package, session_id=f"cs_{s}", payment_status=payment_status,
                                   status=status, payment_intent=f"pi_{s}")
        outcome = process_stripe_event(deps, event_json(session, event_type, event_id=f"evt_{s}_{kind}_{copy}"))
        if outcome.status == "credited":
            credited[s] += 1

    paid = {s for s, kind, _ in deliveries if kind in PAID}
    for user in {"u1", "u2", "u3"}:
        assert store.balance(user) == store.ledger_sum(user)
        assert store.balance(user) == sum(PACKAGES[owners[s][1]][0] for s in paid if owners[s][0] == user)
    assert credited == Counter({s: 1 for s in paid})
    assert set(store.ledger) == {f"purchase_cs_{s}" for s in paid}
    for s in paid:
        assert store.status(f"cs_{s}") == "fulfilled"
