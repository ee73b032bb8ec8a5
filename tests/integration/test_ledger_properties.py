"""Random sequences of ledger operations through the real stack, with the invariants checked after each step.

A hypothesis state machine drives purchases, duplicate deliveries (alone or concurrent, with
the same or a new event id), spends (with reused idempotency keys), grants, cumulative refunds
(in and out of order) and disputes (opened, won, lost, redelivered) through the web tier,
Redis, the Celery worker and the Firestore emulator. A model predicts every balance the way
core/handlers/refunds.py, core/handlers/debt.py and core/services/balance.py define it; after each step, for every user of the
example, the ledger audit (core.services.audit.check_user) finds nothing, the balance and the frozen
state equal the model's, and every purchase is fulfilled with exactly one purchase entry.

Each example uses users of its own (``_clean`` runs once per test function, not per example).
"""
from __future__ import annotations

import itertools
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis as redis_lib
from hypothesis import HealthCheck, settings as hsettings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from core.services.audit import check_user
from tests.integration.conftest import eventually
from tests.integration.test_ledger_operations import charge_refunded, deliver, dispute_event, grant, processed, spend
from devstack import stripe_events as events

USERS = 3
PACKAGES = sorted(events.PACKAGES)
REFUND_LEVELS = ((1, 4), (1, 3), (1, 2), (3, 4), (1, 1))  # fractions of the amount paid
_examples = itertools.count(1)

MACHINE_SETTINGS = hsettings(
    max_examples=10, stateful_step_count=15, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


@dataclass
class UserModel:
    uid: str
    balance: int = 0
    spent: dict = field(default_factory=dict)  # idempotency key -> (amount, balance after) of a posted spend
    keys: list = field(default_factory=list)  # every key tried, posted or refused


@dataclass
class PurchaseModel:
    user: int
    session: dict
    event: dict
    tokens: int
    paid: int
    refunded_cents: int = 0
    refunded_tokens: int = 0
    reversed_tokens: int = 0
    refund_entries: set = field(default_factory=set)  # cumulative amounts that wrote a refund entry
    dispute_ids: tuple = ()
    disputes: dict = field(default_factory=dict)  # dispute id -> open | won | lost
    reversal_entries: set = field(default_factory=set)  # dispute ids that wrote a dispute_reversal entry

    @property
    def remaining(self) -> int:
        return self.tokens - self.refunded_tokens - self.reversed_tokens


def _in_flight(broker, event_ids: set[str], queue: str) -> bool:
    """Whether a message for one of these events is still queued or held unacknowledged by a worker
    (acks_late: a message stays in kombu's ``unacked`` hash until its task ends; a retry is queued
    before the message it replaces is acknowledged). Celery's headers carry the event id in clear."""
    messages = broker.lrange(queue, 0, -1) + broker.hvals("unacked")
    return any(evt_id.encode() in message for message in messages for evt_id in event_ids)


def _concurrently(calls):
    if len(calls) == 1:
        return [calls[0]()]
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


class LedgerMachine(RuleBasedStateMachine):
    purchases = Bundle("purchases")

    def __init__(self, web_client, deps, secret, broker):
        super().__init__()
        self.web_client, self.deps, self.secret, self.broker = web_client, deps, secret, broker
        prefix = f"prop{next(_examples)}{secrets.token_hex(3)}"
        self.users = [UserModel(f"{prefix}-u{i}") for i in range(USERS)]
        self.bought: dict[str, PurchaseModel] = {}

    # --- plumbing ---------------------------------------------------------------------------

    def _send(self, evts: list[dict]) -> None:
        """Deliver signed events (concurrently when several) and wait until the worker has done them all."""
        _concurrently([lambda e=e: deliver(self.web_client, e, self.secret) for e in evts])
        ids = {e["id"] for e in evts}
        for evt in {e["id"]: e for e in evts}.values():
            processed(self.deps, evt)
        # A copy whose id was already processed leaves no trace of its own: wait until no message for these
        # events is left with the broker (looked at twice, across the instant between a worker's pop and hold).
        def settled() -> bool:
            if _in_flight(self.broker, ids, self.deps.settings.celery_queue):
                return False
            time.sleep(0.05)
            return not _in_flight(self.broker, ids, self.deps.settings.celery_queue)

        eventually(settled, what="worker done with the step's events")

    def _frozen(self, user: int) -> set[str]:
        return {did for p in self.bought.values() if p.user == user
                for did, state in p.disputes.items() if state == "open"}

    # --- rules ------------------------------------------------------------------------------

    @initialize(target=purchases, user=st.integers(0, USERS - 1), package=st.sampled_from(PACKAGES))
    def first_purchase(self, user, package):
        return self._buy(user, package)

    @initialize(amounts=st.lists(st.integers(0, 120), min_size=USERS, max_size=USERS))
    def starting_grants(self, amounts):
        for user, amount in enumerate(amounts):
            if amount:
                self.grant(user, amount)

    @rule(target=purchases, user=st.integers(0, USERS - 1), package=st.sampled_from(PACKAGES))
    def buy(self, user, package):
        return self._buy(user, package)

    def _buy(self, user, package):
        session = events.checkout_session(self.users[user].uid, package)
        evt = events.event(session)
        self._send([evt])
        tokens, paid = events.PACKAGES[package]
        self.bought[session["id"]] = PurchaseModel(user, session, evt, tokens, paid,
                                                   dispute_ids=(events.new_id("dp"), events.new_id("dp")))
        self.users[user].balance += tokens
        return session["id"]

    @rule(sid=purchases, copies=st.lists(st.booleans(), min_size=1, max_size=3))
    def redeliver(self, sid, copies):
        """Each copy is the original event again (True) or a new event for the same session (False)."""
        p = self.bought[sid]
        self._send([p.event if same else events.event(p.session) for same in copies])

    @rule(user=st.integers(0, USERS - 1), amount=st.integers(1, 60), reuse=st.booleans(), pick=st.integers(0, 7),
          same=st.booleans(), copies=st.integers(1, 2))
    def spend(self, user, amount, reuse, pick, same, copies):
        """A spend, sometimes with a key used before (with its amount or another), sometimes sent twice at once."""
        u = self.users[user]
        if reuse and u.keys:
            key = u.keys[pick % len(u.keys)]
            if same and key in u.spent:
                amount = u.spent[key][0]
        else:
            key = f"k{len(u.keys)}"
            u.keys.append(key)
        responses = _concurrently([lambda: spend(self.web_client, u.uid, amount, key=key)] * copies)
        codes = sorted(r.status_code for r in responses)
        if key in u.spent:
            first_amount, balance_after = u.spent[key]
            if first_amount == amount:
                assert codes == [200] * copies, [r.json for r in responses]
                assert all(r.json["replayed"] and r.json["balance"] == balance_after for r in responses)
            else:
                assert codes == [409] * copies, [r.json for r in responses]
        elif self._frozen(user):
            assert codes == [423] * copies, [r.json for r in responses]
        elif amount > u.balance:
            assert codes == [402] * copies, [r.json for r in responses]
            assert all(r.json["balance"] == u.balance for r in responses)
        else:
            u.balance -= amount
            u.spent[key] = (amount, u.balance)
            assert codes == [200] * copies, [r.json for r in responses]
            assert sorted(r.json["replayed"] for r in responses) == [False] + [True] * (copies - 1)
            assert all(r.json["balance"] == u.balance and r.json["amount"] == -amount for r in responses)

    @rule(user=st.integers(0, USERS - 1), amount=st.integers(1, 150))
    def grant(self, user, amount):
        u = self.users[user]
        resp = grant(self.web_client, u.uid, amount, createAccount=True)
        u.balance += amount
        assert resp.status_code == 200 and resp.json["balance"] == u.balance, resp.json

    @rule(sid=purchases, level=st.sampled_from(REFUND_LEVELS), in_order=st.sampled_from([True, True, True, False]))
    def refund(self, sid, level, in_order):
        """A charge.refunded with a cumulative amount: normally at least the last one, sometimes a late smaller one."""
        p = self.bought[sid]
        num, den = level
        cents = p.paid * num // den
        if in_order:
            cents = max(cents, p.refunded_cents)
        self._send([charge_refunded(p.session, cents)])
        # The model of core/handlers/refunds.py, core/handlers/debt.py + FirestoreLedgerStore.reverse_purchase: the entry is keyed on the
        # event's cumulative amount; the debit is what the largest cumulative amount adds, never more than remains.
        if cents in p.refund_entries:
            return
        top = max(p.refunded_cents, cents)
        target = p.tokens if top >= p.paid else p.tokens * top // p.paid
        debit = max(0, min(target - p.refunded_tokens, p.remaining))
        p.refunded_cents, p.refunded_tokens = top, p.refunded_tokens + debit
        if debit:
            p.refund_entries.add(cents)
            self.users[p.user].balance -= debit

    @rule(sid=purchases, which=st.integers(0, 1))
    def dispute_opened(self, sid, which):
        p = self.bought[sid]
        did = p.dispute_ids[which]
        self._send([dispute_event(p.session, "charge.dispute.created", "needs_response", did)])
        p.disputes.setdefault(did, "open")  # a dispute already known (open or closed) does not freeze again

    @rule(sid=purchases, which=st.integers(0, 1), won=st.booleans())
    def dispute_closed(self, sid, which, won):
        p = self.bought[sid]
        did = p.dispute_ids[which]
        outcome = p.disputes.get(did)
        if outcome not in ("won", "lost"):
            outcome = "won" if won else "lost"
        # else: a redelivery of the closing event, with the outcome it had
        self._send([dispute_event(p.session, "charge.dispute.closed", outcome, did)])
        if outcome == "lost" and did not in p.reversal_entries:
            debit = max(0, p.remaining)
            p.reversed_tokens += debit
            if debit:
                p.reversal_entries.add(did)
                self.users[p.user].balance -= debit
        p.disputes[did] = outcome

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def ledger_matches_model_and_audit(self):
        for index, u in enumerate(self.users):
            user, entries, purchases = self.deps.store.user_ledger(u.uid)
            violations = check_user(u.uid, user, entries, purchases, self.deps.store.user_lots(u.uid),
                                    self.deps.store.user_holds(u.uid), self.deps.clock())
            assert not violations, [v.as_dict() for v in violations]
            user = user or {}
            assert int(user.get("tokenBalance") or 0) == u.balance, (u.uid, user.get("tokenBalance"), u.balance)
            assert set(user.get("frozenBy") or {}) == self._frozen(index), (u.uid, user.get("frozenBy"))
            purchase_entries = Counter(e.get("checkoutSessionId") for e in entries if e.get("type") == "purchase")
            stored = {p["id"]: p for p in purchases}
            for sid, p in self.bought.items():
                if p.user != index:
                    continue
                assert stored.get(sid, {}).get("status") == "fulfilled", (sid, stored.get(sid))
                assert purchase_entries[sid] == 1, (sid, purchase_entries[sid])
                assert int(stored[sid].get("refundedTokens") or 0) == p.refunded_tokens, (sid, stored[sid])
                assert int(stored[sid].get("reversedTokens") or 0) == p.reversed_tokens, (sid, stored[sid])


def test_random_ledger_operations_keep_every_invariant(web_client, deps, worker, secret, settings):
    broker = redis_lib.Redis.from_url(settings.broker_url)
    run_state_machine_as_test(lambda: LedgerMachine(web_client, deps, secret, broker), settings=MACHINE_SETTINGS)

