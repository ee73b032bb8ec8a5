"""The shipped worker (worker.celery_app + worker.tasks) with candidate changes from bench.candidates.

    BENCH_CANDIDATE=batched,nolock python -m bench.run --worker-app bench.candidate_worker ...

BENCH_CANDIDATE (comma-separated, default "batched"):
- batched: the credit is one atomic batched write (bench.candidates.credit_purchase_batched);
- nolock:  no Redis user lock around the credit (safe only with "batched": nothing is read
           and written back, so concurrent credits to one user cannot lose an update).
Experiment only: see bench/candidates.py.
"""
import contextlib
import os

import core.fulfilment
from bench.candidates import credit_purchase_batched
from core.firestore_store import FirestoreLedgerStore
from worker.celery_app import app  # noqa: F401 - the app celery -A loads
import worker.tasks  # noqa: F401 - registers tokenbank's tasks

CANDIDATE = {c.strip() for c in os.environ.get("BENCH_CANDIDATE", "batched").split(",") if c.strip()}
unknown = CANDIDATE - {"batched", "nolock"}
if unknown:
    raise SystemExit(f"BENCH_CANDIDATE: unknown {sorted(unknown)}")
if "nolock" in CANDIDATE and "batched" not in CANDIDATE:
    raise SystemExit("BENCH_CANDIDATE: nolock needs batched (the transaction reads and writes back)")
if "batched" in CANDIDATE:
    FirestoreLedgerStore.credit_purchase = credit_purchase_batched
if "nolock" in CANDIDATE:
    core.fulfilment.user_lock = lambda *args, **kwargs: contextlib.nullcontext()
