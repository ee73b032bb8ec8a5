"""What a chaos run sends, and what it must end as.

Purchases are Checkout Sessions built from Stripe's example objects (devstack/stripe_events.py),
each priced from the catalog, for about N/4 users. Some purchases are then refunded (partly,
fully, in two steps) or disputed (lost, won, left open). Their PaymentIntents are created in the
run's own Stripe sandbox with tokenbank's metadata, as Checkout would, so a reversal that
overtakes its credit can be attributed by the worker. Every event may be delivered twice with the
same id, and some sessions come again under a second event id. The expected end state per
purchase (tokens, tokens taken back, open dispute) is what the checks compare with.
"""
from __future__ import annotations

import copy
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from devstack import stripe_events as events

# scenario -> (share of purchases, reversal events: (kind, refund fraction or dispute status))
SCENARIOS = {
    "none": (0.0, ()),  # the rest
    "partial_refund": (0.04, (("refund", 0.5),)),
    "refund_in_two_steps": (0.03, (("refund", 0.3), ("refund", 1.0))),
    "full_refund": (0.03, (("refund", 1.0),)),
    "dispute_lost": (0.03, (("dispute_created", "needs_response"), ("dispute_closed", "lost"))),
    "dispute_won": (0.02, (("dispute_created", "needs_response"), ("dispute_closed", "won"))),
    "refund_then_dispute_lost": (0.02, (("refund", 0.4), ("dispute_created", "needs_response"),
                                        ("dispute_closed", "lost"))),
    "dispute_open": (0.01, (("dispute_created", "needs_response"),)),
}


@dataclass
class Purchase:
    index: int
    session_id: str
    user_id: str
    package: str
    tokens: int
    price: int
    scenario: str = "none"
    payment_intent: str = ""
    charge: str = ""
    dispute_id: str | None = None
    reversed_tokens: int = 0  # what the reversals must take back in the end
    dispute_status: str | None = None  # the dispute's final status (needs_response if left open)


@dataclass(frozen=True)
class Delivery:
    event_id: str
    event_type: str
    body: str
    session_id: str
    kind: str  # purchase | second_id | refund | dispute_created | dispute_closed


@dataclass
class Workload:
    purchases: list[Purchase]
    deliveries: list[Delivery]  # shuffled, duplicates included
    users: list[str]
    counts: dict = field(default_factory=dict)

    @property
    def by_session(self) -> dict[str, Purchase]:
        return {p.session_id: p for p in self.purchases}


def refund_cents(price: int, fraction: float) -> int:
    return price if fraction >= 1 else max(1, round(price * fraction))


def expected_reversal(p: Purchase) -> int:
    """Tokens the purchase's reversals take back, whatever order they arrive in."""
    steps = SCENARIOS[p.scenario][1]
    if any(kind == "dispute_closed" and arg == "lost" for kind, arg in steps):
        return p.tokens  # a lost dispute takes whatever the refunds left
    cents = max((refund_cents(p.price, arg) for kind, arg in steps if kind == "refund"), default=0)
    return p.tokens if cents >= p.price else p.tokens * cents // p.price


def assign_scenarios(n: int, rng: random.Random) -> list[str]:
    """At least one purchase of each scenario, then each in its share; the rest buy nothing else."""
    out = []
    for name, (share, _) in SCENARIOS.items():
        if name != "none":
            out += [name] * max(1, round(share * n))
    out = out[:n] + ["none"] * max(0, n - len(out))
    rng.shuffle(out)
    return out


def create_payment_intents(stripe_client, purchases: list[Purchase], threads: int = 4) -> None:
    """A succeeded PaymentIntent with tokenbank's metadata for each purchase that will be reversed."""
    def create(p: Purchase):
        pi = stripe_client.v1.payment_intents.create(params={
            "amount": p.price, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
            "allowed_payment_method_types": ["card"],
            "metadata": {"userId": p.user_id, "packageId": p.package, "tokens": str(p.tokens)}})
        if pi.status != "succeeded" or not pi.latest_charge:
            raise RuntimeError(f"sandbox PaymentIntent not paid: {pi}")
        p.payment_intent, p.charge = pi.id, pi.latest_charge

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, [p for p in purchases if p.scenario != "none"]))


def _charge_refunded(p: Purchase, cents: int) -> dict:
    charge = copy.deepcopy(events._fixture("charge"))
    charge.update(id=p.charge, payment_intent=p.payment_intent, amount=p.price, amount_captured=p.price,
                  captured=True, paid=True, status="succeeded", currency="usd", metadata={},
                  amount_refunded=cents, refunded=cents >= p.price)
    return charge


def _dispute(p: Purchase, status: str) -> dict:
    dispute = copy.deepcopy(events._fixture("dispute"))
    dispute.update(id=p.dispute_id, payment_intent=p.payment_intent, charge=p.charge, amount=p.price,
                   currency="usd", status=status, reason="fraudulent")
    return dispute


def build(n: int, tag: str, seed: int, stripe_client, duplicate_share: float = 0.30,
          second_id_share: float = 0.10) -> Workload:
    rng = random.Random(seed)
    n_users = max(1, n // 4)
    users = [f"chaos_{tag}_u{j}" for j in range(n_users)]
    packages = list(events.PACKAGES)
    scenarios = assign_scenarios(n, rng)
    purchases = []
    for i in range(n):
        package = rng.choice(packages)
        tokens, price = events.PACKAGES[package]
        p = Purchase(i, f"cs_chaos_{tag}_{i}", users[i % n_users], package, tokens, price, scenarios[i],
                     payment_intent=f"pi_chaos_{tag}_{i}")
        purchases.append(p)
    create_payment_intents(stripe_client, purchases)

    unique: list[Delivery] = []
    for p in purchases:
        session = events.checkout_session(p.user_id, p.package, session_id=p.session_id,
                                          payment_intent=p.payment_intent)
        for k, kind in enumerate(["purchase"] + (["second_id"] if rng.random() < second_id_share else [])):
            evt = events.event(session, event_id=f"evt_chaos_{tag}_{p.index}_c{k}")
            unique.append(Delivery(evt["id"], evt["type"], json.dumps(evt), p.session_id, kind))
        steps = SCENARIOS[p.scenario][1]
        if any(kind.startswith("dispute") for kind, _ in steps):
            p.dispute_id = f"dp_chaos_{tag}_{p.index}"
        for k, (kind, arg) in enumerate(steps):
            if kind == "refund":
                evt = events.event(_charge_refunded(p, refund_cents(p.price, arg)), "charge.refunded")
            else:
                evt = events.event(_dispute(p, arg), f"charge.{kind.replace('_', '.')}")
                p.dispute_status = arg
            evt["id"] = f"evt_chaos_{tag}_{p.index}_r{k}"
            unique.append(Delivery(evt["id"], evt["type"], json.dumps(evt), p.session_id, kind))
        p.reversed_tokens = expected_reversal(p)
    twice = [d for d in unique if rng.random() < duplicate_share]
    deliveries = unique + twice
    rng.shuffle(deliveries)
    counts = {"purchases": n, "users": n_users, "unique_events": len(unique), "deliveries": len(deliveries),
              "same_id_redeliveries": len(twice), "second_event_ids": sum(d.kind == "second_id" for d in unique),
              "reversal_events": sum(d.kind not in ("purchase", "second_id") for d in unique),
              "scenarios": {s: scenarios.count(s) for s in SCENARIOS}}
    return Workload(purchases, deliveries, users, counts)
