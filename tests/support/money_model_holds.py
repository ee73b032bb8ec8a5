"""The money model's holds and expiring tokens: rules mixed into MoneyMachine.

Holds are placed (replays and conflicts by key), captured (once, or replayed), released
(idempotent) and expired by the clock; promo grants expire at their time. The model knows
what each answer must be from the balance it tracks and the open holds (available =
balance − open holds: the expiry job runs after every tick, whenever a hold ends and just
before every spend, hold and adjustment, so nothing expired is still waiting — a credit can
make an expired lot that an open hold kept expirable: the new tokens back the hold instead), and takes what the expiry entries wrote as expired,
checking that only promo tokens ever expire. The audit at teardown checks every lot.
"""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

USERS = ("u1", "u2")  # the model's users (tests/support/money_model.py uses these too)


@dataclass
class HoldModel:
    user: str
    hold_id: str
    amount: int
    ttl: int
    expires_at: int
    status: str = "open"  # open | captured | released | expired
    capture: tuple[str, int] | None = None  # (key, amount)



class HoldRules:
    # -- holds: placed, captured, released, expired; promo tokens that expire ----------------
    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 400), key=st.sampled_from(("h1", "h2", "h3")),
          ttl=st.sampled_from((60, 900)))
    def hold(self, user, amount, key, ttl):
        self._expire(0)  # the expiry job may have run just before
        answer, hold_id = self.driver.hold(user, amount, key, ttl)
        previous = self.holds.get((user, key))
        if previous is not None:
            same = (previous.amount, previous.ttl) == (amount, ttl)
            assert answer == ("ok" if same else "conflict"), (user, key, previous, amount, ttl, answer)
            assert not same or hold_id == previous.hold_id
            return
        available = self._balance(user) - self._held(user)
        expected = "frozen" if self._frozen(user) else "insufficient" if available < amount else "ok"
        assert answer == expected, (user, amount, available, answer)
        if answer == "ok":
            self.holds[(user, key)] = HoldModel(user, hold_id, amount, ttl, self.now + ttl)

    def _pick_hold(self, pick: int) -> HoldModel | None:
        return list(self.holds.values())[pick % len(self.holds)] if self.holds else None

    @precondition(lambda self: self.holds)
    @rule(pick=st.integers(0, 100), share=st.integers(0, 100), key=st.sampled_from(("c1", "c2")))
    def capture(self, pick, share, key):
        hold = self._pick_hold(pick)
        amount = hold.amount * share // 100
        answer = self.driver.capture(hold.user, hold.hold_id, amount, key)
        if hold.status == "captured":
            expected = "ok" if hold.capture == (key, amount) else "conflict"
        else:
            expected = {"open": "ok", "released": "conflict", "expired": "expired"}[hold.status]
        assert answer == expected, (hold, amount, key, answer)
        if hold.status == "open":
            hold.status, hold.capture = "captured", (key, amount)
            self.other[hold.user] -= amount
            self.spent[hold.user] += amount
            self._expire(0)  # a hold that ends may free tokens of an expired lot: the job takes them

    @precondition(lambda self: self.holds)
    @rule(pick=st.integers(0, 100))
    def release(self, pick):
        hold = self._pick_hold(pick)
        answer = self.driver.release(hold.user, hold.hold_id)
        assert answer == ("conflict" if hold.status == "captured" else "ok"), (hold, answer)
        if hold.status == "open":
            hold.status = "released"
            self._expire(0)

    @precondition(lambda self: self.EXPIRY)
    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 300), key=st.sampled_from(("p1", "p2")),
          lasts=st.sampled_from((30, 120)))
    def promo(self, user, amount, key, lasts):
        expires_at = self.now + lasts  # seconds after the driver's start
        answer = self.driver.promo(user, amount, key, expires_at)
        previous = self.keys.get(("promo", user, key))
        if previous is not None:
            assert answer == ("ok" if previous == (amount, expires_at) else "conflict"), (user, key, previous, answer)
            return
        assert answer == "ok"
        self.keys[("promo", user, key)] = (amount, expires_at)
        self.other[user] += amount
        self.earned[user] += amount

    @precondition(lambda self: self.EXPIRY)
    @rule(seconds=st.sampled_from((30, 61, 900)))
    def tick(self, seconds):
        self._expire(seconds)

    def _expire(self, seconds: int) -> None:
        if not self.EXPIRY:
            return
        before = {u: sum(e["amount"] for e in self.driver.entries(u) if e["type"] == "expiry") for u in USERS}
        self.driver.tick(seconds)
        self.now += seconds
        for hold in self.holds.values():
            if hold.status == "open" and hold.expires_at <= self.now:
                hold.status = "expired"
        for user in USERS:
            taken = before[user] - sum(e["amount"] for e in self.driver.entries(user) if e["type"] == "expiry")
            assert taken >= 0
            self.other[user] -= taken
            self.expired[user] += taken
            promos = sum(amount for (op, u, _), (amount, _) in
                         ((k, v) for k, v in self.keys.items() if k[0] == "promo") if u == user)
            assert self.expired[user] <= promos, (user, self.expired[user], promos)  # only promo tokens expire

