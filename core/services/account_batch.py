"""Many requests on one account, committed together: the ``core.ports.AccountBatch`` port.

Firestore serialises the writes to one document, so one transaction per request caps one busy
account at the rate of transactions on its document. ``AccountBatcher`` commits the requests
that arrive while a transaction for the account is in flight together, in the next one.

How (per process, per user; no background thread): the first caller for an idle account is
the leader. It takes the queued requests (its own first, at most ``max_batch``) and runs ONE
``uow.run`` under ``lock(user_id)``: one ``get_all`` of every request's ``reads``, then each
work in submission order against its own savepoint view of the transaction. Callers arriving
meanwhile queue and wait on an Event. When the batch is answered the leader hands leadership
to the first still-queued caller, who runs the next batch, and returns.

Guarantees:
- each work sees the account as if it ran alone after the works before it in the batch: its
  reads see their committed writes (one idempotency key twice in a batch replays the first);
- a ``Refusal`` raised by a work is that caller's answer only: the savepoint drops that work's
  puts and adds, and the others commit;
- any other error (store failure, a bug, the lock not acquired) fails every work of the batch,
  each caller gets it raised, and nothing commits: the batch is one transaction;
- a retry of the transaction (``tx.attempt > 1``) runs every work again from scratch, so works
  must be pure over the Tx they are given (as for ``UnitOfWork.run``);
- every queued caller is answered: leadership passes on until the account's queue is empty.
The Redis lock serialises batches across processes, so their transactions do not contend.
A work must not itself submit to the same batcher (it would wait for its own batch).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable, Sequence, TypeVar

from core.domain.errors import Refusal
from core.ports import Tx, UnitOfWork, UserLock

T = TypeVar("T")
log = logging.getLogger(__name__)


class _Savepoint:
    """A ``Tx`` over the batch's Tx: this work's writes are buffered here and reach the batch's
    Tx only when the work returns (``release``); reads see them first, then the batch's Tx."""

    def __init__(self, tx: Tx):
        self._tx = tx
        self.attempt = tx.attempt
        self._puts: dict[tuple[type, str], Any] = {}
        self._adds: dict[tuple[type, str], Any] = {}

    def get(self, kind: type[T], key: str) -> T | None:
        return self.get_all((kind, key))[0]

    def get_all(self, *wanted: tuple[type, str]) -> list[Any]:
        missing = [w for w in dict.fromkeys(wanted) if w not in self._puts and w not in self._adds]
        found = dict(zip(missing, self._tx.get_all(*missing))) if missing else {}
        return [self._puts.get(w, self._adds.get(w)) if w not in found else found[w] for w in wanted]

    def put(self, value: Any) -> None:
        self._puts[(type(value), value.key)] = value

    def add(self, value: Any) -> None:
        item = (type(value), value.key)
        if item in self._adds:
            raise ValueError(f"{value.key} added twice in one unit of work")
        self._adds[item] = value

    def release(self) -> None:
        for value in self._adds.values():
            self._tx.add(value)
        for value in self._puts.values():
            self._tx.put(value)


class _Request:
    __slots__ = ("work", "reads", "woken", "leads", "ok", "value")

    def __init__(self, work: Callable[[Tx], Any], reads: Sequence[tuple[type, str]]):
        self.work, self.reads = work, tuple(reads)
        self.woken = threading.Event()  # answered, or made leader
        self.leads = False
        self.ok: bool | None = None  # None until answered
        self.value: Any = None  # the result, or the exception to raise

    def answer(self) -> Any:
        if not self.ok:
            raise self.value
        return self.value


class AccountBatcher:
    """``core.ports.AccountBatch``: concurrent works on one account, one transaction per batch.
    ``on_batch(size, attempts)`` is told of every batch that reached the store."""

    def __init__(self, uow: UnitOfWork, lock: UserLock, max_batch: int = 64,
                 on_batch: Callable[[int, int], None] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.uow, self.lock, self.max_batch, self.on_batch = uow, lock, max_batch, on_batch
        self._mutex = threading.Lock()
        self._queues: dict[str, deque[_Request]] = {}  # a user is busy while it has a queue here

    def submit(self, user_id: str, work: Callable[[Tx], T], reads: Sequence[tuple[type, str]] = ()) -> T:
        request = _Request(work, reads)
        with self._mutex:
            queue = self._queues.get(user_id)
            if queue is None:  # idle account: this caller leads
                queue = self._queues[user_id] = deque()
                request.leads = True
            queue.append(request)
        if not request.leads:
            request.woken.wait()
        if request.leads:
            self._lead(user_id, queue)
        return request.answer()

    def _lead(self, user_id: str, queue: deque[_Request]) -> None:
        with self._mutex:  # the leader is at the head of the queue: it is in its own batch
            batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
        try:
            self._run(user_id, batch)
        finally:
            with self._mutex:
                if queue:
                    queue[0].leads = True
                    queue[0].woken.set()
                else:
                    del self._queues[user_id]
            for request in batch:
                request.woken.set()

    def _run(self, user_id: str, batch: list[_Request]) -> None:
        reads = list(dict.fromkeys(read for request in batch for read in request.reads))
        attempts = 0

        def body(tx: Tx) -> list[tuple[bool, Any]]:
            nonlocal attempts
            attempts += 1
            if reads:
                tx.get_all(*reads)
            outcomes = []
            for request in batch:
                view = _Savepoint(tx)
                try:
                    result = request.work(view)
                except Refusal as refused:
                    outcomes.append((False, refused))
                    continue
                view.release()
                outcomes.append((True, result))
            return outcomes

        try:
            with self.lock(user_id):
                outcomes = self.uow.run(body)
        except BaseException as failed:  # the batch is one transaction: nothing committed
            outcomes = [(False, failed)] * len(batch)
        for request, (ok, value) in zip(batch, outcomes):
            request.ok, request.value = ok, value
        if attempts and self.on_batch is not None:
            try:
                self.on_batch(len(batch), attempts)
            except Exception:  # reporting never changes an answer
                log.exception("account batch report failed")
