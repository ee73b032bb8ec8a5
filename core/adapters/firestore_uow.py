"""The unit of work on Cloud Firestore: one transaction per ``run``, retried on contention.

Reads go to the transaction (all of a round's reads in one ``get_all``); writes are
buffered by DocumentTx and applied just before commit, so Firestore's rule "all reads
before any write" always holds. A contended transaction runs the work again from scratch
(at most ``max_attempts`` times); ``Tx.attempt`` tells the work which try it is. After a commit
that wrote new outgoing events, ``on_events`` is told which accounts did (core/outbox_kick.py).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from google.cloud import firestore

from core.adapters.documents import NOW, DocumentTx

T = TypeVar("T")


def _value(value: Any) -> Any:
    if value is NOW:
        return firestore.SERVER_TIMESTAMP
    return value


class _FirestoreBackend:
    def __init__(self, db: firestore.Client, transaction: firestore.Transaction):
        self.db = db
        self.transaction = transaction

    def _ref(self, path: tuple[str, str]):
        return self.db.collection(path[0]).document(path[1])

    def read(self, paths: list[tuple[str, str]]) -> list[Mapping[str, Any] | None]:
        refs = [self._ref(p) for p in paths]
        snaps = {snap.reference.path: snap for snap in self.transaction.get_all(refs)}
        return [snaps[ref.path].to_dict() if snaps[ref.path].exists else None for ref in refs]

    def set(self, path: tuple[str, str], fields: dict, merge: list[str]) -> None:
        self.transaction.set(self._ref(path), {k: _value(v) for k, v in fields.items()}, merge=merge)

    def create(self, path: tuple[str, str], fields: dict) -> None:
        self.transaction.create(self._ref(path), {k: _value(v) for k, v in fields.items()})


class FirestoreUnitOfWork:
    def __init__(self, db: firestore.Client, max_attempts: int = 5,
                 on_events: Callable[[dict[str, int]], None] | None = None):
        self.db = db
        self.max_attempts = max_attempts
        self.on_events = on_events

    def run(self, work: Callable[[DocumentTx], T]) -> T:
        attempts = 0
        last: list[DocumentTx] = []

        @firestore.transactional
        def body(transaction: firestore.Transaction) -> T:
            nonlocal attempts
            attempts += 1
            tx = DocumentTx(_FirestoreBackend(self.db, transaction), attempts)
            result = work(tx)
            tx.flush()
            last[:] = [tx]
            return result

        result = body(self.db.transaction(max_attempts=self.max_attempts))
        emitted = last[0].emitted() if last and self.on_events is not None else {}
        if emitted:
            self.on_events(emitted)
        return result
