"""AccountBatcher on the dict-backed unit of work: coalescing, isolation of refusals, failure of
the whole batch on any other error, leader hand-off, max_batch (threads, no sockets)."""
from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY

from core import metrics
from core.adapters.documents import DocumentTx
from core.domain.account import Account
from core.domain.errors import InsufficientFunds
from core.domain.ledger import Entry
from core.services.account_batch import AccountBatcher
from tests.unit.fakes import FakeLedgerStore, _DictBackend, make_deps

USER = "u_batch"


def credit(entry_id: str, amount: int = 1, user: str = USER):
    """+amount and one ledger entry keyed on entry_id; the same key again replays the first."""
    def work(tx):
        entry, account = tx.get_all((Entry, entry_id), (Account, user))
        if entry is not None:
            return ("replayed", entry.balance_after)
        account = account or Account(user)
        account = replace(account, balance=account.balance + amount, earned=account.earned + amount)
        tx.put(account)
        tx.add(Entry(entry_id, user, "grant", amount, account.balance))
        return ("posted", account.balance)
    return work


def refused_after_writing(entry_id: str, user: str = USER):
    def work(tx):
        account = tx.get(Account, user) or Account(user)
        tx.put(replace(account, balance=account.balance + 100))
        tx.add(Entry(entry_id, user, "grant", 100, account.balance + 100))
        raise InsufficientFunds(account.balance, 500)
    return work


class GatedUow:
    """The fake unit of work, whose runs numbered in ``gated`` wait for ``release`` (the batch
    is in flight: later submissions queue)."""

    def __init__(self, inner, gated=(1,)):
        self.inner, self.gated, self.runs = inner, set(gated), 0
        self.entered = {n: threading.Event() for n in self.gated}
        self.release = {n: threading.Event() for n in self.gated}

    def run(self, work):
        self.runs = n = self.runs + 1
        if n in self.gated:
            self.entered[n].set()
            assert self.release[n].wait(10), "the test never released the batch"
        return self.inner.run(work)


def setup(max_batch=64, gated=(1,)):
    store = FakeLedgerStore()
    uow = GatedUow(store.uow, gated)
    sizes: list[tuple[int, int]] = []
    batcher = AccountBatcher(uow, lambda user_id: nullcontext(), max_batch, lambda s, a: sizes.append((s, a)))
    return store, uow, batcher, sizes


def submit_in_thread(batcher, work, answers, index, user=USER):
    def call():
        try:
            answers[index] = batcher.submit(user, work)
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            answers[index] = exc
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def queued(batcher, user=USER) -> int:
    return len(batcher._queues.get(user, ()))


def wait_queued(batcher, n):
    deadline = time.monotonic() + 5
    while queued(batcher) != n:
        assert time.monotonic() < deadline, f"timed out waiting for {n} queued"
        time.sleep(0.001)


def behind_a_batch(batcher, uow, works, run=1, start=0, answers=None):
    """Submit ``works`` in order while batch ``run`` is held in flight: they all queue."""
    answers = answers if answers is not None else {}
    assert uow.entered[run].wait(5)
    threads = []
    for i, work in enumerate(works, start):
        before = queued(batcher)
        threads.append(submit_in_thread(batcher, work, answers, i))
        wait_queued(batcher, before + 1)  # queued in submission order
    return answers, threads


def in_one_batch(works, **kw):
    """Run ``works`` in one batch (submission order), behind a first batch that holds them back."""
    store, uow, batcher, sizes = setup(**kw)
    answers: dict[int, object] = {}
    first = submit_in_thread(batcher, credit("e_first"), answers, -1)
    answers, threads = behind_a_batch(batcher, uow, works, answers=answers)
    uow.release[1].set()
    for t in [first, *threads]:
        t.join(5)
    assert sizes[0] == (1, 1) and sizes[1][0] == len(works)
    return store, [answers[i] for i in range(len(works))], sizes


def test_works_submitted_while_a_batch_runs_are_coalesced_into_the_next_transaction():
    store, answers, sizes = in_one_batch([credit(f"e{i}") for i in range(9)])
    assert sizes == [(1, 1), (9, 1)]
    assert store.uow.counts["transactions"] == 2
    assert answers == [("posted", i + 2) for i in range(9)]  # each sees the ones before it
    assert store.balance(USER) == 10 and len(store.ledger) == 10


def test_a_refusal_is_that_callers_answer_only_and_its_writes_are_discarded():
    store, answers, _ = in_one_batch([credit("e_a"), refused_after_writing("e_refused"), credit("e_b")])
    assert answers[0] == ("posted", 2)
    assert isinstance(answers[1], InsufficientFunds)
    assert answers[2] == ("posted", 3)  # it never saw the refused work's +100
    assert store.balance(USER) == 3
    assert sorted(store.ledger) == ["e_a", "e_b", "e_first"]


def test_a_store_error_fails_every_work_of_the_batch_and_commits_nothing():
    def broken(tx):
        tx.get(Account, USER)
        raise RuntimeError("store down")

    store, answers, sizes = in_one_batch([credit("e_a"), broken, credit("e_b")])
    assert all(isinstance(a, RuntimeError) for a in answers) and answers[0] is answers[1] is answers[2]
    assert store.balance(USER) == 1 and sorted(store.ledger) == ["e_first"]
    assert sizes[1] == (3, 1)


def test_a_unit_of_work_that_raises_fails_the_batch_and_the_account_goes_on():
    store = FakeLedgerStore()
    batcher = AccountBatcher(store.uow, lambda user_id: nullcontext())
    store.uow.fail.append(ConnectionError("firestore unavailable"))
    with pytest.raises(ConnectionError):
        batcher.submit(USER, credit("e_a"))
    assert store.ledger == {} and batcher._queues == {}
    assert batcher.submit(USER, credit("e_a")) == ("posted", 1)


def test_the_same_key_twice_in_one_batch_replays_the_first():
    store, answers, _ = in_one_batch([credit("e_same", 5), credit("e_same", 5)])
    assert answers == [("posted", 6), ("replayed", 6)]
    assert store.balance(USER) == 6 and sorted(store.ledger) == ["e_first", "e_same"]


def test_leadership_is_handed_on_until_the_queue_is_empty():
    store, uow, batcher, sizes = setup(gated=(1, 2))
    answers: dict[int, object] = {}
    first = submit_in_thread(batcher, credit("e_first"), answers, -1)
    _, second = behind_a_batch(batcher, uow, [credit(f"a{i}") for i in range(4)], 1, 0, answers)
    uow.release[1].set()  # batch 2 (led by a0) starts and is held: more arrive behind it
    _, third = behind_a_batch(batcher, uow, [credit(f"b{i}") for i in range(3)], 2, 4, answers)
    uow.release[2].set()
    for t in [first, *second, *third]:
        t.join(5)
        assert not t.is_alive()
    assert [s for s, _ in sizes] == [1, 4, 3]
    assert sorted(v[1] for v in answers.values()) == list(range(1, 9))
    assert store.balance(USER) == 8 and batcher._queues == {}


def test_max_batch_is_respected():
    store, uow, batcher, sizes = setup(max_batch=3)
    answers: dict[int, object] = {}
    first = submit_in_thread(batcher, credit("e_first"), answers, -1)
    _, threads = behind_a_batch(batcher, uow, [credit(f"e{i}") for i in range(10)], answers=answers)
    uow.release[1].set()
    for t in [first, *threads]:
        t.join(5)
    assert [s for s, _ in sizes] == [1, 3, 3, 3, 1]
    assert store.balance(USER) == 11 and len(store.ledger) == 11


def test_prefetch_reads_every_works_reads_in_one_round_trip():
    store = FakeLedgerStore()
    reads: list[int] = []

    class Counting:
        def run(self, work):
            def counted(tx):
                original = tx.backend.read
                tx.backend.read = lambda paths: (reads.append(len(paths)), original(paths))[1]
                return work(tx)
            return store.uow.run(counted)

    batcher = AccountBatcher(Counting(), lambda user_id: nullcontext())
    batcher.submit(USER, credit("e1"), reads=[(Entry, "e1"), (Account, USER)])
    assert reads == [2]  # the work's own get_all was answered from the prefetch


def test_a_retried_transaction_runs_every_work_again_from_scratch():
    store = FakeLedgerStore()
    seen: list[int] = []

    class RetryOnce:  # contention: the first attempt is thrown away, the second commits
        def run(self, work):
            work(DocumentTx(_DictBackend(store.docs, store.uow.now, store.uow.counts), attempt=1))
            tx = DocumentTx(backend := _DictBackend(store.docs, store.uow.now, store.uow.counts), attempt=2)
            result = work(tx)
            tx.flush()
            backend.commit()
            return result

    def watched(tx):
        seen.append(tx.attempt)
        return credit("e1")(tx)

    reports: list[tuple[int, int]] = []  # (size, attempts)
    batcher = AccountBatcher(RetryOnce(), lambda user_id: nullcontext(), on_batch=lambda s, a: reports.append((s, a)))
    assert batcher.submit(USER, watched) == ("posted", 1)
    assert seen == [1, 2] and reports == [(1, 2)] and store.balance(USER) == 1


def test_many_threads_on_one_account_lose_nothing():
    deps, answers = make_deps(store := FakeLedgerStore()), {}
    threads = [submit_in_thread(deps.batch, credit(f"e{i}"), answers, i) for i in range(200)]
    for t in threads:
        t.join(10)
    assert sorted(v[1] for v in answers.values()) == list(range(1, 201))
    assert store.balance(USER) == 200 and len(store.ledger) == 200


def test_the_default_report_moves_the_batch_size_and_retry_metrics():
    names = ("tokenbank_account_batch_size_count", "tokenbank_account_batch_size_sum",
             "tokenbank_transaction_retries_total")
    before = [REGISTRY.get_sample_value(n) or 0.0 for n in names]
    metrics.account_batch(5, 3)
    metrics.account_batch(2, 1)
    assert [(REGISTRY.get_sample_value(n) or 0.0) - b for n, b in zip(names, before)] == [2, 7, 2]
