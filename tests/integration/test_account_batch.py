"""One busy account on the real Firestore emulator and Redis: concurrent works on the same
account share transactions (deps.batch, as bootstrap builds it), lose nothing, and never retry."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from prometheus_client import REGISTRY

from core.domain.account import Account
from core.domain.ledger import Entry
from tests.integration.conftest import doc, docs

THREADS, EACH = 32, 20


def count(work_id: str, user: str):
    """Read the account, +1 on its balance (the counter), one ledger entry for this work."""
    def work(tx):
        account = tx.get(Account, user) or Account(user)
        account = replace(account, balance=account.balance + 1, earned=account.earned + 1)
        tx.put(account)
        tx.add(Entry(work_id, user, "grant", 1, account.balance))
        return account.balance
    return work


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_concurrent_works_on_one_account_share_transactions_and_lose_nothing(deps):
    user = f"batch_{time.time_ns()}"
    before = (sample("tokenbank_account_batch_size_count"), sample("tokenbank_account_batch_size_sum"),
              sample("tokenbank_transaction_retries_total"))

    def caller(t: int) -> list[int]:
        return [deps.batch.submit(user, count(f"{user}_{t}_{i}", user), reads=[(Account, user)])
                for i in range(EACH)]

    with ThreadPoolExecutor(THREADS) as pool:
        answers = [b for answered in pool.map(caller, range(THREADS)) for b in answered]

    works = THREADS * EACH
    assert sorted(answers) == list(range(1, works + 1))  # each work saw the ones before it
    account = doc(deps, "users", user)
    assert account["tokenBalance"] == works and account["totalTokensEarned"] == works
    entries = {e["_id"] for e in docs(deps, "transactions", userId=user)}
    assert entries == {f"{user}_{t}_{i}" for t in range(THREADS) for i in range(EACH)}

    transactions = sample("tokenbank_account_batch_size_count") - before[0]
    assert sample("tokenbank_account_batch_size_sum") - before[1] == works
    assert sample("tokenbank_transaction_retries_total") - before[2] == 0
    assert 0 < transactions < works, f"{transactions} transactions for {works} works"
