"""The fan-out: each account's outgoing events become deliveries, in order, once.

For one account, in one transaction: from the account's cursor (the last seq already fanned out)
take the next events in seq order, queue one delivery per message for every enabled endpoint
subscribed to it (the subscriptions are one document read in the same transaction) (core/domain/outbox.py ``messages_for``: the event, then the balance.low and
balance.depleted it implies for that endpoint's threshold), mark the events dispatched and move
the cursor. Guarantees:
- idempotent: a delivery's id is its endpoint's and its message's, created in the transaction
  that marks its event dispatched, so a second fan-out (a kick and the sweep at once, a retry)
  finds the events dispatched and queues nothing; one fan-out runs per account at a time (a Redis
  run lock; without it, or if it is lost, two would contend on the cursor and one run again);
- ordered: an account's events are fanned out in seq order, never past a gap (an event not yet
  visible stops the run), and its deliveries are queued in that order (an endpoint's queue is
  read by commit time, then position);
- nothing lost: an event is committed with its change (the outbox), and the sweep (beat, every
  ``OUTBOX_SWEEP_EVERY_SECONDS``) fans out every account with undispatched events older than a
  few seconds, whatever happened to the kick that followed the commit (core/outbox_kick.py).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from core import metrics
from core.domain.deliveries import new_delivery
from core.domain.outbox import AccountEvent, OutboxCursor, event_id, messages_for
from core.domain.webhook_endpoints import Subscriptions

log = logging.getLogger("tokenbank.outbox")
EVENTS_PER_RUN = 100  # events one transaction reads at most
MAX_WRITES = 400  # Firestore allows 500 writes per transaction
SWEEP_GRACE_SECONDS = 2.0  # events younger than this are left to their kick
SWEEP_ACCOUNTS = 200
SWEEP_BUDGET_SECONDS = 20.0


class SweepFailed(Exception):
    pass


@dataclass(frozen=True)
class FannedOut:
    events: int = 0
    deliveries: int = 0
    endpoints: frozenset[str] = frozenset()
    cursor: int = 0  # the account's dispatched seq after the run

    def __add__(self, other: "FannedOut") -> "FannedOut":
        return FannedOut(self.events + other.events, self.deliveries + other.deliveries,
                         self.endpoints | other.endpoints, max(self.cursor, other.cursor))


def _fan_out_run(tx, user_id: str, seqs: list[int], clock) -> FannedOut:
    """Queue the account's events after its cursor, up to ``max(seqs)``. The cursor, the
    subscriptions and the events ``seqs`` names are read in one round trip (usually all there is:
    the events just committed)."""
    read = tx.get_all((OutboxCursor, user_id), (Subscriptions, Subscriptions.KEY),
                      *[(AccountEvent, event_id(user_id, s)) for s in seqs[:EVENTS_PER_RUN]])
    cursor = read[0] or OutboxCursor(user_id)
    endpoints = sorted((read[1] or Subscriptions()).endpoints.items())
    wanted = list(range(cursor.dispatched_seq + 1, max(seqs) + 1))[:EVENTS_PER_RUN]
    if not wanted:
        return FannedOut(cursor=cursor.dispatched_seq)
    events = tx.get_all(*[(AccountEvent, event_id(user_id, seq)) for seq in wanted])  # what is not read yet
    now = clock()  # queued now: a delivery's retry window starts here
    writes, done, queued, hit = 1, 0, 0, set()
    for event in events:
        if event is None:  # not visible yet: stop before the gap, so the order holds
            break
        deliveries = [] if event.dispatched else [
            new_delivery(endpoint_id, message, now) for endpoint_id, (types, threshold) in endpoints
            for message in messages_for(event, set(types), threshold)]
        if done and writes + len(deliveries) + 1 > MAX_WRITES:
            break
        for delivery in deliveries:
            tx.add(delivery)
            hit.add(delivery.endpoint_id)
        if not event.dispatched:
            tx.put(replace(event, dispatched=True))
        writes, done, queued = writes + len(deliveries) + 1, done + 1, queued + len(deliveries)
    if done:
        tx.put(replace(cursor, dispatched_seq=cursor.dispatched_seq + done))
    return FannedOut(done, queued, frozenset(hit), cursor.dispatched_seq + done)


def fan_out_account(deps, queue, user_id: str, kick: bool = True, up_to: int | None = None) -> dict:
    """Queue the undispatched events of ``user_id`` (up to seq ``up_to`` when the kick after a commit
    says which it wrote; else all, found by a query); with ``kick``, ask for each endpoint's delivery.

    One fan-out per account at a time (``deps.run_lock``): concurrent ones would only contend on
    the cursor. One asked for meanwhile leaves a mark, and the running one looks again."""
    key = f"fanout:{user_id}"
    token = deps.run_lock.acquire(key)
    if token is None:
        deps.run_lock.note_kick(key)
        return {"busy": True, "events": 0, "deliveries": 0, "endpoints": []}
    try:
        done = _fan_out(deps, user_id, up_to)
        while deps.run_lock.take_kick(key):
            done = done + _fan_out(deps, user_id, None)
    finally:
        deps.run_lock.release(key, token)
    if done.deliveries:
        metrics.OUTBOX_QUEUED.inc(done.deliveries)
        log.info("outbox fanned out", extra={"user_id": user_id, "events": done.events, "deliveries": done.deliveries})
    if kick:
        for endpoint_id in sorted(done.endpoints):
            queue.request_delivery(endpoint_id)
    return {"events": done.events, "deliveries": done.deliveries, "endpoints": sorted(done.endpoints)}


def _fan_out(deps, user_id: str, up_to: int | None) -> FannedOut:
    total, target = FannedOut(), up_to
    while True:
        if target is None:
            seqs = deps.store.undispatched_seqs(user_id, EVENTS_PER_RUN)
            if not seqs:
                return total
        else:
            seqs = [target]
        run = deps.uow.run(lambda tx: _fan_out_run(tx, user_id, seqs, deps.clock))
        total = total + run
        if run.events == 0:  # done already, or an earlier event not visible yet: the next kick or sweep goes on
            return total
        if run.cursor < max(seqs):
            target = max(seqs)  # cut short by the transaction's size: go on to the same end
        elif up_to is not None:
            return total  # what the kick named is queued; later events have kicks of their own
        else:
            target = None  # look for more


def sweep(deps, queue, budget_seconds: float = SWEEP_BUDGET_SECONDS) -> dict:
    """Fan out what no kick did, then ask every enabled endpoint not waiting out a retry for a run."""
    now = deps.clock()
    deadline = time.monotonic() + budget_seconds
    users = deps.store.undispatched_users(now - SWEEP_GRACE_SECONDS, SWEEP_ACCOUNTS)
    totals = {"accounts": 0, "events": 0, "deliveries": 0, "failed": 0, "endpointsKicked": 0}
    for user_id in users:
        if time.monotonic() > deadline:
            break  # the next sweep goes on
        try:
            done = fan_out_account(deps, queue, user_id, kick=False)
        except Exception:
            log.exception("fan-out failed", extra={"user_id": user_id})
            totals["failed"] += 1
            continue
        totals["accounts"] += 1
        totals["events"] += done["events"]
        totals["deliveries"] += done["deliveries"]
    for endpoint in deps.store.list_endpoints():
        if endpoint.enabled and (endpoint.retry_at is None or endpoint.retry_at <= deps.clock()):
            # a run not started by the time the next sweeps come is theirs to ask for: none pile up
            queue.request_delivery(endpoint.id, expires=3 * deps.settings.outbox_sweep_every_seconds + 5)
            totals["endpointsKicked"] += 1
    if totals["events"] or totals["failed"]:
        log.info("outbox sweep", extra=totals)
    if totals["failed"]:
        raise SweepFailed(f"{totals['failed']} of {len(users)} accounts failed; the next sweep retries them")
    return totals
