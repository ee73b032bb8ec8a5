"""A model of every money path, as a Hypothesis state machine over a pluggable driver.

The machine buys packages and plan invoices, draws for each its Stripe events (the credit,
cumulative partial and full refunds, a dispute created and closed won/lost/warning_closed/
prevented), and then delivers any of them 0–3 times, in any order, sometimes under a second
event id — reversals before credits included — interleaved with spends, grants and
adjustments (and replays of their idempotency keys). After every step it checks, for each
user, against what the delivered events imply (order-independent):

- balance == Σ ledger == the model's balance, and the totals and ``debt`` agree;
- each payment whose credit was delivered has exactly one credit entry, others none;
- each payment's entries sum to ``tokens − ⌊tokens × refunded ÷ paid⌋`` (0 when a dispute
  was lost), whatever the order, and each refund entry is taken once;
- the account is frozen exactly while one of its disputes is open;
- no delivery failed (nothing would be dead-lettered) and every event was recorded;
- holds, captures, releases, promo grants that expire and the clock moving on
  (tests/support/money_model_holds.py) keep the account's open holds and totals exact.

A driver delivers and reads: ``tests/unit/test_money_model.py`` runs the real handlers on the
dict-backed unit of work (thousands of examples); ``tests/integration/test_money_model.py``
runs the same machine through signed webhooks, the worker and Firestore (fewer examples).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.support.money_model_holds import USERS, HoldModel, HoldRules

PACKAGES = {"starter": (50, 499), "basic": (200, 1499), "pro": (500, 2999), "premium": (1000, 4999)}
PLAN = ("monthly", 600, 2499)
CLOSED = ("won", "lost", "warning_closed", "prevented")
MAX_DELIVERIES = 3


class Driver(Protocol):
    def new_payment_intent(self, amount: int, metadata: dict) -> str:
        """A paid PaymentIntent that Stripe knows, with this metadata; its id."""

    def know_invoice(self, pi: str, invoice: dict) -> None:
        """Stripe knows ``invoice`` as paid by ``pi`` (a plan invoice's PaymentIntent has no metadata)."""

    def deliver(self, event: dict) -> None: ...

    def spend(self, user: str, amount: int, key: str) -> str: ...  # ok | insufficient | frozen

    def grant(self, user: str, amount: int, key: str) -> str: ...

    def adjust(self, user: str, amount: int, key: str) -> str: ...

    def account(self, user: str) -> dict: ...

    def hold(self, user: str, amount: int, key: str, ttl: int) -> tuple[str, str | None]:
        """(ok | insufficient | frozen | conflict, the hold id)"""

    def capture(self, user: str, hold_id: str, amount: int, key: str) -> str: ...  # ok | conflict | expired

    def release(self, user: str, hold_id: str) -> str: ...  # ok | conflict

    def promo(self, user: str, amount: int, key: str, expires_at: int) -> str:
        """A promo grant expiring ``expires_at`` seconds after the driver's clock started."""

    def tick(self, seconds: int) -> None:
        """Move the clock on, then run the expiry job (core/services/expiry.py)."""

    def entries(self, user: str) -> list[dict]: ...

    def event_status(self, event_id: str) -> str | None: ...


@dataclass
class PaymentModel:
    id: str
    user: str
    kind: str  # package | plan_invoice
    tokens: int
    paid: int
    pi: str
    credited: bool = False
    refunded_cents: int = 0
    dispute_created: bool = False
    dispute_closed: str | None = None

    @property
    def net(self) -> int:
        if not self.credited or self.dispute_closed == "lost":
            return 0
        cents = self.refunded_cents
        taken = self.tokens if cents >= self.paid else self.tokens * cents // self.paid
        return self.tokens - taken

    @property
    def frozen(self) -> bool:
        return self.dispute_created and self.dispute_closed is None


@dataclass
class Pending:
    event: dict
    payment: PaymentModel
    effect: tuple
    deliveries: int = 0
    ids: list[str] = field(default_factory=list)


_seq = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_m{next(_seq)}"


def _event(event_type: str, obj: dict, created: int) -> dict:
    return {"id": _id("evt"), "object": "event", "type": event_type, "created": created, "livemode": False,
            "data": {"object": obj}}


class MoneyMachine(HoldRules, RuleBasedStateMachine):
    """Subclass with ``make_driver()``; ``self.driver`` is built fresh for each example.
    ``PLANS = False`` leaves plan invoices out (a driver whose Stripe cannot list invoices);
    ``EXPIRY = False`` leaves out expiring promo grants and the clock (a driver without one)."""

    PLANS = True
    EXPIRY = True

    def make_driver(self) -> Driver:
        raise NotImplementedError

    def __init__(self):
        super().__init__()
        self.driver = self.make_driver()
        self.payments: list[PaymentModel] = []
        self.pending: list[Pending] = []
        self.other = {u: 0 for u in USERS}  # grants, adjustments and spends, as the model saw them
        self.earned = {u: 0 for u in USERS}
        self.spent = {u: 0 for u in USERS}
        self.keys: dict[tuple[str, str], tuple[str, int, str]] = {}
        self.delivered: list[str] = []
        self.checked = 0  # delivered events whose record was already checked
        self.clock = 1_767_225_600
        self.now = 0  # seconds the driver's clock has moved on
        self.holds: dict[tuple[str, str], HoldModel] = {}
        self.expired = {u: 0 for u in USERS}

    # -- buying: a payment and the Stripe events it may cause ------------------------------
    @rule(user=st.sampled_from(USERS), package=st.sampled_from(sorted(PACKAGES)), plan=st.booleans(),
          refunds=st.lists(st.integers(1, 100), max_size=2), dispute=st.sampled_from((None,) + CLOSED))
    def buy(self, user, package, plan, refunds, dispute):
        plan = plan and self.PLANS
        tokens, paid = (PLAN[1], PLAN[2]) if plan else PACKAGES[package]
        metadata = {} if plan else {"userId": user, "packageId": package, "tokens": str(tokens)}
        pi = self.driver.new_payment_intent(paid, metadata)
        payment = PaymentModel(_id("in" if plan else "cs"), user, "plan_invoice" if plan else "package", tokens, paid, pi)
        self.payments.append(payment)
        if plan:
            metadata = {"userId": user, "planId": PLAN[0]}
            invoice = {"id": payment.id, "object": "invoice", "status": "paid", "amount_paid": paid, "amount_due": paid,
                       "currency": "usd", "billing_reason": "subscription_cycle",
                       "parent": {"type": "subscription_details",
                                  "subscription_details": {"subscription": f"sub_{user}", "metadata": metadata}},
                       "lines": {"object": "list", "data": []},
                       "payments": {"object": "list", "data": [
                           {"object": "invoice_payment", "id": _id("inpay"), "invoice": payment.id, "status": "paid",
                            "amount_paid": paid, "payment": {"type": "payment_intent", "payment_intent": pi}}]}}
            self.driver.know_invoice(pi, invoice)
            self._add(_event("invoice.paid", invoice, self.clock), payment, ("credit",))
        else:
            session = {"id": payment.id, "object": "checkout.session", "mode": "payment", "status": "complete",
                       "payment_status": "paid", "client_reference_id": user, "metadata": metadata,
                       "amount_total": paid, "currency": "usd", "payment_intent": pi}
            self._add(_event("checkout.session.completed", session, self.clock), payment, ("credit",))
        charge = {"id": _id("ch"), "object": "charge", "amount": paid, "payment_intent": pi, "metadata": {}}
        cumulative = sorted({min(paid, max(1, paid * pct // 100)) for pct in refunds})
        for cents in cumulative:
            self._add(_event("charge.refunded", {**charge, "amount_refunded": cents, "refunded": cents == paid},
                             self.clock), payment, ("refund", cents))
        if dispute:
            obj = {"id": _id("dp"), "object": "dispute", "amount": paid, "charge": charge["id"], "payment_intent": pi,
                   "reason": "fraudulent"}
            self._add(_event("charge.dispute.created", {**obj, "status": "needs_response"}, self.clock), payment,
                      ("dispute_created",))
            self._add(_event("charge.dispute.closed", {**obj, "status": dispute}, self.clock + 1), payment,
                      ("dispute_closed", dispute))
        self.clock += 2

    def _add(self, event: dict, payment: PaymentModel, effect: tuple) -> None:
        self.pending.append(Pending(event, payment, effect))

    # -- delivering, in any order, up to three times, sometimes as a new Event object -------
    @precondition(lambda self: any(p.deliveries < MAX_DELIVERIES for p in self.pending))
    @rule(pick=st.integers(0, 10_000), new_event_object=st.booleans())
    def deliver(self, pick, new_event_object):
        open_ = [p for p in self.pending if p.deliveries < MAX_DELIVERIES]
        item = open_[pick % len(open_)]
        event = copy.deepcopy(item.event)
        if new_event_object and item.deliveries:
            event["id"] = _id("evt")  # Stripe may create two Event objects for one change
        item.deliveries += 1
        self.driver.deliver(event)
        self.delivered.append(event["id"])
        payment, effect = item.payment, item.effect
        if effect[0] == "credit":
            payment.credited = True
        elif effect[0] == "refund":
            payment.refunded_cents = max(payment.refunded_cents, effect[1])
        elif effect[0] == "dispute_created":
            payment.dispute_created = True
        elif payment.dispute_closed is None:
            payment.dispute_closed = effect[1]

    # -- the app's own operations -----------------------------------------------------------
    def _balance(self, user: str) -> int:
        return sum(p.net for p in self.payments if p.user == user) + self.other[user]

    def _held(self, user: str) -> int:
        return sum(h.amount for h in self.holds.values() if h.user == user and h.status == "open")

    def _frozen(self, user: str) -> bool:
        return any(p.frozen for p in self.payments if p.user == user)

    def _operate(self, op: str, user: str, amount: int, key: str, expected: str) -> None:
        """Run one keyed operation: a key already written replays (same request) or conflicts."""
        answer = getattr(self.driver, op)(user, amount, key)
        previous = self.keys.get((op, user, key))
        if previous is not None:
            assert answer == ("ok" if previous == amount else "conflict"), (op, user, key, previous, amount, answer)
            return
        assert answer == expected, (op, user, amount, self._balance(user), answer)
        if answer == "ok":
            self.keys[(op, user, key)] = amount
            self.other[user] += -amount if op == "spend" else amount
            if op == "spend":
                self.spent[user] += amount
            else:
                self.earned[user] += amount

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 700), key=st.sampled_from(("k1", "k2", "k3", "k4")))
    def spend(self, user, amount, key):
        self._expire(0)  # the expiry job may have run just before (a credit can free an expired lot's tokens)
        available = self._balance(user) - self._held(user)
        expected = "frozen" if self._frozen(user) else "insufficient" if available < amount else "ok"
        self._operate("spend", user, amount, key, expected)

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 300), key=st.sampled_from(("g1", "g2")))
    def grant(self, user, amount, key):
        self._operate("grant", user, amount, key, "ok")  # a credit always lands, debt or not

    @rule(user=st.sampled_from(USERS), amount=st.integers(-300, 300).filter(bool), key=st.sampled_from(("a1", "a2")))
    def adjust(self, user, amount, key):
        if not self.driver.account(user):
            return  # adjusting needs an existing account
        self._expire(0)
        available = self._balance(user) - self._held(user)
        expected = "insufficient" if amount < 0 and available + amount < 0 else "ok"
        self._operate("adjust", user, amount, key, expected)

    # -- what must hold after every step ----------------------------------------------------
    @invariant()
    def balances_equal_the_ledger_and_the_model(self):
        for user in USERS:
            account, entries = self.driver.account(user), self.driver.entries(user)
            balance = int(account.get("tokenBalance") or 0)
            assert balance == sum(e["amount"] for e in entries), (user, balance, entries)
            assert balance == self._balance(user), (user, balance, self._balance(user))
            assert int(account.get("debt") or 0) == max(0, -balance)
            purchased = sum(p.net for p in self.payments if p.user == user)
            assert int(account.get("totalTokensPurchased") or 0) == purchased
            assert int(account.get("totalTokensEarned") or 0) == self.earned[user]
            assert int(account.get("totalTokensSpent") or 0) == self.spent[user]
            assert int(account.get("totalTokensExpired") or 0) == self.expired[user]
            held = {k: int(v["amount"]) for k, v in (account.get("holds") or {}).items()}
            assert held == {h.hold_id: h.amount for h in self.holds.values() if h.user == user and h.status == "open"}
            open_disputes = {k for k in (account.get("frozenBy") or {})}
            assert bool(open_disputes) == self._frozen(user), (user, open_disputes)

    @invariant()
    def each_payment_is_credited_once_and_reversed_in_proportion(self):
        ledgers = {user: self.driver.entries(user) for user in USERS}
        for payment in self.payments:
            mine = [e for e in ledgers[payment.user]
                    if payment.id in (e.get("checkoutSessionId"), e.get("invoiceId"))]
            credits = [e for e in mine if e["type"] in ("purchase", "subscription_allowance")]
            assert len(credits) == (1 if payment.credited else 0), (payment, mine)
            assert sum(e["amount"] for e in mine) == payment.net, (payment, mine)
            ids = [e["id"] for e in mine]
            assert len(ids) == len(set(ids))

    @invariant()
    def every_delivered_event_was_recorded(self):
        for event_id in self.delivered[self.checked:]:
            assert self.driver.event_status(event_id) in ("processed", "ignored"), event_id
        self.checked = len(self.delivered)
