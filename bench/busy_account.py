"""Phase 5 of ``python -m bench.run``: one busy account (issue 11).

32 HTTP clients (threads with keep-alive connections, spread over a few load-generator
processes) send a fixed number of operations to the real web tier (gunicorn, ``web.app``):
half of the operations are ``hold 10 -> capture 0..10`` pairs (a pair counts as 2 operations),
half are spends of 1..5. The measured run puts every operation on ONE account; the baseline,
in the same run, spreads the same mix over 1,000 accounts. Rounds alternate (one, spread,
spread, one, ...) so drift on the shared machine hits both.

Reported: operations per second, p50/p99 latency per HTTP call, transaction retries (the delta
of ``tokenbank_transaction_retries_total``) and the mean batch size (the delta of
``tokenbank_account_batch_size``), both read from the web tier's ``/metrics``. gunicorn runs
several worker processes and a scrape reaches one of them, so this phase starts its own
gunicorn with a fresh ``PROMETHEUS_MULTIPROC_DIR``: every worker writes its samples there and
each scrape sums them over the workers (counters and histograms keep the samples of workers
that exited too).

Checked afterwards, against Firestore: every account's ``tokenBalance`` equals the sum of its
ledger entries and what the clients were told (grants - spends - captures); every 200/201
answer that names a ledger entry finds it with its amount, and the ledger holds no entry no
answer named (nothing lost, nothing extra); every placed hold is captured with the amount asked
and none is left open; the ledger audit (``core.services.audit``) finds nothing; no HTTP
error at all (the accounts are funded beyond what the mix can take, so not even a 402 is
expected).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import json
import multiprocessing
import os
import queue
import random
import secrets
import threading
import time
from pathlib import Path

from devstack.processes import clear_firestore

HOLD_AMOUNT = 10
ONE_FUNDING = 1_000_000  # the most one grant may give (core.domain.ledger.MAX_GRANT)
SPREAD_FUNDING = 10_000
TIMEOUT = 30.0


def add_arguments(p) -> None:
    p.add_argument("--busy-ops", type=int, default=3000,
                   help="operations per run of phase 5 (a hold+capture pair counts as 2)")
    p.add_argument("--busy-clients", type=int, default=32, help="concurrent HTTP clients in phase 5")
    p.add_argument("--busy-client-procs", type=int, default=4,
                   help="load-generator processes the phase-5 clients are spread over")
    p.add_argument("--busy-accounts", type=int, default=1000, help="accounts of phase 5's spread baseline")
    p.add_argument("--busy-rounds", type=int, default=2, help="alternating one-account/spread runs of phase 5")
    p.add_argument("--busy-warmup-ops", type=int, default=300)
    p.add_argument("--busy-web-threads", type=int, default=None,
                   help="gunicorn threads per worker for phase 5 (default: enough for every client to be in "
                        "service at once, ceil(clients / workers), and at least WEB_THREADS)")
    p.add_argument("--busy-web-workers", type=int, default=None,
                   help="gunicorn workers for phase 5 (default: WEB_CONCURRENCY, else the shipped 2)")


# -- the load generator (runs in child processes: only the standard library) ----------------------
@dataclasses.dataclass
class Call:
    item: int
    kind: str  # grant | hold | capture | spend
    account: str
    amount: int  # what was asked: granted, held, captured, spent
    key: str
    status: int  # 0: no HTTP answer (connection error, timeout)
    ms: float
    started: float  # time.monotonic(): CLOCK_MONOTONIC, comparable across processes
    ended: float
    answer: dict | None


def _post(conn_box, port, path, body, headers):
    """One POST on the client's keep-alive connection; a broken connection is reopened (and the
    call counted as failed: the harness never retries)."""
    payload = json.dumps(body).encode()
    started = time.monotonic()
    t0 = time.perf_counter()
    try:
        conn = conn_box[0]
        conn.request("POST", path, payload, headers)
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = {"raw": raw[:200].decode(errors="replace")}
    except (OSError, http.client.HTTPException) as exc:
        conn_box[0].close()
        conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        status, answer = 0, {"exception": repr(exc)}
    ms = (time.perf_counter() - t0) * 1000
    return status, ms, started, time.monotonic(), answer


def _client_process(port: int, service_key: str, items: list, threads: int, ready, go, out) -> None:
    headers = {"Content-Type": "application/json", "X-Service-Key": service_key}
    work: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        work.put(item)
    calls: list[Call] = []
    lock = threading.Lock()

    def client():
        box = [http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)]
        mine = []
        go.wait()
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                break
            index, kind, account = item[0], item[1], item[2]
            if kind == "spend":
                _, _, _, amount, key = item
                r = _post(box, port, "/api/tokens/spend",
                          {"userId": account, "amount": amount, "reason": "bench spend", "idempotencyKey": key},
                          headers)
                mine.append(Call(index, "spend", account, amount, key, *r))
            elif kind == "grant":
                _, _, _, amount, key = item
                r = _post(box, port, "/api/tokens/grant",
                          {"userId": account, "amount": amount, "reason": "bench funding", "idempotencyKey": key,
                           "createAccount": True}, headers)
                mine.append(Call(index, "grant", account, amount, key, *r))
            else:  # a pair: hold, then capture what the "work" used
                _, _, _, hold_key, capture_amount, capture_key = item
                r = _post(box, port, "/api/tokens/holds",
                          {"userId": account, "amount": HOLD_AMOUNT, "idempotencyKey": hold_key,
                           "ttlSeconds": 600, "reason": "bench hold"}, headers)
                mine.append(Call(index, "hold", account, HOLD_AMOUNT, hold_key, *r))
                hold_id = (r[4] or {}).get("holdId") if r[0] == 201 else None
                if hold_id:
                    r = _post(box, port, f"/api/tokens/holds/{hold_id}/capture",
                              {"userId": account, "amount": capture_amount, "idempotencyKey": capture_key}, headers)
                    mine.append(Call(index, "capture", account, capture_amount, capture_key, *r))
        box[0].close()
        with lock:
            calls.extend(mine)

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for t in pool:
        t.start()
    ready.put(threads)
    go.wait()
    cpu = time.process_time()
    for t in pool:
        t.join()
    out.put(([dataclasses.astuple(c) for c in calls], time.process_time() - cpu))


def drive(port: int, service_key: str, items: list, clients: int, procs: int,
          track=None) -> tuple[list[Call], float, float]:
    """Send ``items`` from ``clients`` threads over ``procs`` processes; each process's threads
    take the next item of a shared list (a closed loop). Returns the calls, the wall seconds
    from the first send to the last answer, and the CPU seconds the clients used meanwhile."""
    ctx = multiprocessing.get_context("spawn")  # nothing of the harness's gRPC state in the children
    procs = max(1, min(procs, clients))
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    shares = [items[i::procs] for i in range(procs)]
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_client_process, args=(port, service_key, shares[i], per[i], ready, go, out),
                            daemon=True) for i in range(procs)]
    for c in children:
        c.start()
        if track is not None:
            track(c)
    for _ in children:
        ready.get(timeout=60)
    go.set()
    calls: list[Call] = []
    cpu = 0.0
    for _ in children:
        done, used = out.get(timeout=600)
        calls += [Call(*t) for t in done]
        cpu += used
    for c in children:
        c.join(10)
    if not calls:
        raise RuntimeError("the load generator made no calls")
    wall = max(c.ended for c in calls) - min(c.started for c in calls)
    return calls, wall, cpu


# -- the workload ---------------------------------------------------------------------------------
def plan(prefix: str, n_ops: int, accounts: list[str], rng: random.Random) -> list[tuple]:
    """``n_ops`` operations: half in hold+capture pairs (2 operations each), half spends of 1..5,
    shuffled; each item on a random account of ``accounts``."""
    n_pairs = n_ops // 4
    n_spends = n_ops - 2 * n_pairs
    kinds = ["pair"] * n_pairs + ["spend"] * n_spends
    rng.shuffle(kinds)
    items = []
    for i, kind in enumerate(kinds):
        account = accounts[0] if len(accounts) == 1 else rng.choice(accounts)
        if kind == "spend":
            items.append((i, "spend", account, rng.randint(1, 5), f"{prefix}-s{i}"))
        else:
            items.append((i, "pair", account, f"{prefix}-h{i}", rng.randint(0, HOLD_AMOUNT), f"{prefix}-c{i}"))
    return items


def ops_of(calls: list[Call]) -> int:
    return sum(1 for c in calls if c.kind in ("hold", "capture", "spend"))


# -- metrics --------------------------------------------------------------------------------------
def scrape(port: int, token: str) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        text = resp.read().decode()
        if resp.status != 200:
            raise RuntimeError(f"/metrics answered {resp.status}: {text[:200]}")
    finally:
        conn.close()
    out: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] += float(value)
    return out


def metric_delta(before: dict, after: dict) -> dict:
    keys = set(before) | set(after)
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys if after.get(k, 0.0) != before.get(k, 0.0)}


def batch_figures(delta: dict) -> dict:
    count = delta.get("tokenbank_account_batch_size_count", 0.0)
    total = delta.get("tokenbank_account_batch_size_sum", 0.0)
    buckets = sorted(((float(k.split('le="')[1].split('"')[0]), v) for k, v in delta.items()
                      if k.startswith("tokenbank_account_batch_size_bucket")), key=lambda kv: kv[0])
    dist, below = {}, 0.0
    for le, cumulative in buckets:
        if cumulative - below:
            dist["+Inf" if le == float("inf") else f"<={le:g}"] = int(cumulative - below)
        below = cumulative
    return {"batches": int(count), "requests": int(total), "mean": total / count if count else 0.0,
            "distribution": dist,
            "retries": int(delta.get("tokenbank_transaction_retries_total", 0.0))}


# -- the phase ------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
    label: str
    calls: list[Call]
    wall: float
    cpu: dict
    batch: dict

    @property
    def ops(self) -> int:
        return ops_of(self.calls)

    @property
    def rate(self) -> float:
        return self.ops / self.wall


class BusyAccount:
    def __init__(self, bench):
        self.bench = bench
        self.args = bench.args
        self.report = bench.report
        self.rng = random.Random(11)
        self.service_key = "svc_bench_" + secrets.token_hex(20)
        self.metrics_token = secrets.token_hex(24)
        self.prefix = f"busy{bench.tag}"
        self.calls: list[Call] = []  # every call of the phase: funding, warm-up, the runs

    def start_web(self):
        a, b = self.args, self.bench
        multiproc = Path(b.tmp) / "busy-metrics"
        multiproc.mkdir(exist_ok=True)
        env = {**b.env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "SERVICE_API_KEYS": self.service_key,
               "METRICS_TOKEN": self.metrics_token}
        if a.busy_web_workers is not None:
            env["WEB_CONCURRENCY"] = str(a.busy_web_workers)
        workers = int(env.get("WEB_CONCURRENCY", "2"))
        # Every client in service at once: with the shipped 2 x 4, 24 of the 32 requests would wait
        # in gunicorn's queue, and the figure would measure that queue instead of the account batch.
        threads = a.busy_web_threads or max(int(env.get("WEB_THREADS", "4")), -(-a.busy_clients // workers))
        env["WEB_THREADS"] = str(threads)
        env["BUSY_LOCK_TRACE"] = str(Path(b.tmp) / "lock-trace.jsonl")  # read by traced_app() only
        self.trace = Path(env["BUSY_LOCK_TRACE"])
        self.web_workers = int(env.get("WEB_CONCURRENCY", "2"))
        self.web_threads = int(env.get("WEB_THREADS", "4"))
        self.web = b.stack.gunicorn("gunicorn-busy", a.web_app, env)
        self.port = self.web.extra["port"]

    def send(self, items: list) -> tuple[list[Call], float, float]:
        calls, wall, cpu = drive(self.port, self.service_key, items, self.args.busy_clients,
                                 self.args.busy_client_procs, track=self.bench.stack.track)
        self.calls += calls
        return calls, wall, cpu

    def fund(self, accounts: list[str], amount: int) -> None:
        items = [(i, "grant", acc, amount, f"{self.prefix}-fund-{acc}") for i, acc in enumerate(accounts)]
        calls, wall, _ = self.send(items)
        bad = [c for c in calls if c.status != 200]
        if bad:
            raise RuntimeError(f"funding failed for {len(bad)} of {len(calls)} accounts: {bad[0]}")
        print(f"  funded {len(accounts)} account(s) with {amount:,} tokens each in {wall:.1f}s", flush=True)

    def measure(self, label: str, accounts: list[str], round_no: int) -> RunResult:
        a, b = self.args, self.bench
        items = plan(f"{self.prefix}-{label}{round_no}", a.busy_ops, accounts, self.rng)
        before = scrape(self.port, self.metrics_token)
        meter = b.cpu(gunicorn=self.web.pid)
        since = time.time()
        calls, wall, client_cpu = self.send(items)
        cpu = meter.stop()
        locks = lock_trace(self.trace, since, time.time(), accounts[0]) if label == "one" else None
        if locks:
            print(f"  lock trace ({label}): {locks}", flush=True)
        cpu["client_ms_per_call"] = client_cpu / len(calls) * 1000
        after = scrape(self.port, self.metrics_token)
        if "tokenbank_transaction_retries_total" not in after or "tokenbank_account_batch_size_count" not in after:
            raise RuntimeError("the web tier's /metrics has no account batch metrics")
        batch = batch_figures(metric_delta(before, after))
        answered = sum(1 for c in calls if c.status in (200, 201))
        if batch["requests"] < answered:  # one worker's samples alone would be about 1/workers of them
            raise RuntimeError(f"/metrics counted {batch['requests']} batched requests, {answered} were answered: "
                               f"are the gunicorn workers' samples merged?")
        run = RunResult(label, calls, wall, cpu, batch)
        lat = sorted(c.ms for c in calls)
        bad = collections.Counter(c.status for c in calls if c.status not in (200, 201))
        print(f"  round {round_no + 1} {label:6}: {run.ops} ops in {wall:.2f}s = {run.rate:,.0f} ops/s; "
              f"p50 {_pct(lat, 50):.1f} ms, p99 {_pct(lat, 99):.1f} ms, max {lat[-1]:.0f} ms; "
              f"batches {batch['batches']} (mean {batch['mean']:.2f}, {batch['distribution']}), "
              f"retries {batch['retries']}; non-2xx {dict(bad)}; cores used: {cpu['cores_used']}; CPU ms/op "
              f"{_per_op(cpu, run.ops)}, clients {cpu['client_ms_per_call']:.2f} ms/call", flush=True)
        return run

    def run(self) -> None:
        a, b = self.args, self.bench
        clear_firestore(b.fs.address, b.settings.google_cloud_project)
        self.start_web()
        print(f"\n[5] one busy account: {a.busy_ops:,} operations per run (half hold {HOLD_AMOUNT} -> capture "
              f"0..{HOLD_AMOUNT} pairs, a pair = 2 operations; half spends of 1..5) from {a.busy_clients} keep-alive "
              f"HTTP clients ({a.busy_client_procs} processes); ONE account against the same mix over "
              f"{a.busy_accounts:,} accounts, {a.busy_rounds} rounds alternating; gunicorn {self.web_workers} "
              f"workers x {self.web_threads} threads", flush=True)
        try:
            one = [f"{self.prefix}-one"]
            spread = [f"{self.prefix}-acct{i:04d}" for i in range(a.busy_accounts)]
            warm = [f"{self.prefix}-warm{i:02d}" for i in range(a.busy_clients)]
            self.fund(one + warm, ONE_FUNDING)
            self.fund(spread, SPREAD_FUNDING)
            # Warm-up: every gunicorn thread and connection used once, on both shapes.
            self.send(plan(f"{self.prefix}-warmone", a.busy_warmup_ops, [warm[0]], self.rng))
            self.send(plan(f"{self.prefix}-warmspread", a.busy_warmup_ops, warm, self.rng))
            runs = {"one": [], "spread": []}
            for r in range(a.busy_rounds):
                for label in (("one", "spread") if r % 2 == 0 else ("spread", "one")):
                    runs[label].append(self.measure(label, one if label == "one" else spread, r))
            b.check_dbs()
            t = time.monotonic()
            verdict = self.verify(one + warm + spread)
            print(f"  checked in {time.monotonic() - t:.1f}s", flush=True)
            self.add_rows(runs, verdict)
        finally:
            b.stack.stop(self.web)
            clear_firestore(b.fs.address, b.settings.google_cloud_project)

    # -- the check ----------------------------------------------------------------------------------
    def verify(self, accounts: list[str]) -> dict:
        from core.bootstrap import bootstrap
        from core.services.audit import audit

        db = self.bench.db
        mine = set(accounts)
        problems: list[str] = []
        statuses = collections.Counter((c.kind, c.status) for c in self.calls)
        http_errors = sum(n for (kind, status), n in statuses.items() if status not in (200, 201))
        payment_required = sum(n for (kind, status), n in statuses.items() if status == 402)
        if http_errors:
            sample = next(c for c in self.calls if c.status not in (200, 201))
            failed = {k: v for k, v in statuses.items() if k[1] not in (200, 201)}
            problems.append(f"{http_errors} HTTP errors {failed}"
                            f"; e.g. {sample.kind} {sample.status} {sample.answer}")
        wrong_kind = [c for c in self.calls if c.status in (200, 201)
                      and c.status != {"hold": 201}.get(c.kind, 200)]
        if wrong_kind:
            problems.append(f"{len(wrong_kind)} answers with the wrong success code, e.g. {wrong_kind[0]}")

        # What the answers say the ledger holds, and what each balance must be.
        expected_entries: dict[str, tuple[str, int]] = {}  # entry id -> (account, amount)
        expected_balance = collections.Counter()
        holds: dict[str, tuple[str, Call]] = {}  # hold id -> (account, the capture's call or None)
        replayed = 0
        for c in self.calls:
            if c.status not in (200, 201):
                continue
            ans = c.answer or {}
            replayed += bool(ans.get("replayed"))
            if "userId" in ans and ans["userId"] != c.account:
                problems.append(f"{c.kind} answered for user {ans.get('userId')!r}, asked {c.account!r}")
            if c.kind in ("grant", "spend"):
                amount = c.amount if c.kind == "grant" else -c.amount
                if ans.get("amount") != amount:
                    problems.append(f"{c.kind} {c.key}: answer amount {ans.get('amount')}, expected {amount}")
                expected_entries[ans.get("entryId")] = (c.account, amount)
                expected_balance[c.account] += amount
            elif c.kind == "hold":
                if ans.get("amount") != HOLD_AMOUNT or not ans.get("holdId"):
                    problems.append(f"hold {c.key}: answer {ans}")
                holds.setdefault(ans.get("holdId"), (c.account, None))
            elif c.kind == "capture":
                hold_id = ans.get("holdId")
                if ans.get("captured") != c.amount or ans.get("released") != HOLD_AMOUNT - c.amount:
                    problems.append(f"capture {c.key}: answer {ans}, asked {c.amount}")
                holds[hold_id] = (c.account, c)
                if c.amount:
                    expected_entries[ans.get("entryId")] = (c.account, -c.amount)
                    expected_balance[c.account] -= c.amount
                elif ans.get("entryId") is not None:
                    problems.append(f"capture of 0 {c.key} names a ledger entry {ans.get('entryId')}")
        if replayed:
            problems.append(f"{replayed} answers were replays (every key is sent once)")
        if None in expected_entries:
            problems.append("an answer named no entryId")

        # What Firestore holds.
        ledger: dict[str, dict] = {}
        for snap in db.collection("transactions").stream():
            doc = snap.to_dict()
            if doc.get("userId") in mine:
                ledger[snap.id] = doc
        lost = [e for e in expected_entries if e not in ledger]
        extra = [e for e in ledger if e not in expected_entries]
        if lost:
            problems.append(f"{len(lost)} answered entries missing from the ledger, e.g. {lost[:2]}")
        if extra:
            problems.append(f"{len(extra)} ledger entries no answer named, e.g. {extra[:2]}")
        wrong = [e for e, (acc, amount) in expected_entries.items()
                 if e in ledger and (ledger[e].get("amount") != amount or ledger[e].get("userId") != acc)]
        if wrong:
            e = wrong[0]
            problems.append(f"{len(wrong)} ledger entries with another amount or user than answered, e.g. {e}: "
                            f"{ledger[e].get('userId')} {ledger[e].get('amount')} vs {expected_entries[e]}")
        sums = collections.Counter()
        for doc in ledger.values():
            sums[doc["userId"]] += doc["amount"]
        users = {}
        for start in range(0, len(accounts), 300):
            refs = [db.collection("users").document(acc) for acc in accounts[start:start + 300]]
            users.update({s.id: s.to_dict() for s in db.get_all(refs) if s.exists})
        balance_vs_ledger = [acc for acc in accounts if int((users.get(acc) or {}).get("tokenBalance", 0)) != sums[acc]]
        balance_vs_answers = [acc for acc in accounts
                              if int((users.get(acc) or {}).get("tokenBalance", 0)) != expected_balance[acc]]
        open_in_account = [acc for acc in accounts if (users.get(acc) or {}).get("holds")]
        if len(users) != len(accounts):
            problems.append(f"{len(accounts) - len(users)} funded accounts have no user document")
        if balance_vs_ledger:
            acc = balance_vs_ledger[0]
            problems.append(f"{len(balance_vs_ledger)} balances differ from the sum of their ledger, e.g. {acc}: "
                            f"{users.get(acc, {}).get('tokenBalance')} vs {sums[acc]}")
        if balance_vs_answers:
            acc = balance_vs_answers[0]
            problems.append(f"{len(balance_vs_answers)} balances differ from grants - spends - captures answered, "
                            f"e.g. {acc}: {users.get(acc, {}).get('tokenBalance')} vs {expected_balance[acc]}")
        if open_in_account:
            problems.append(f"{len(open_in_account)} accounts still carry open holds")

        # Every placed hold: captured, with the amount asked, by its own capture.
        docs = {}
        ids = [h for h in holds if h]
        for start in range(0, len(ids), 300):
            refs = [db.collection("holds").document(h) for h in ids[start:start + 300]]
            docs.update({s.id: s.to_dict() for s in db.get_all(refs) if s.exists})
        bad_holds = []
        for hold_id, (acc, capture) in holds.items():
            doc = docs.get(hold_id) or {}
            if (capture is None or doc.get("status") != "captured" or doc.get("captured") != capture.amount
                    or doc.get("userId") != acc or doc.get("entryId") != (capture.answer or {}).get("entryId")):
                bad_holds.append((hold_id, doc.get("status"), doc.get("captured")))
        if bad_holds:
            problems.append(f"{len(bad_holds)} holds not captured as answered, e.g. {bad_holds[0]}")

        # The ledger audit on the busy account, the warm-up accounts and a sample of the spread.
        deps = bootstrap(self.bench.settings, configure_logs=False)
        head = 1 + self.args.busy_clients  # the busy account and the warm-up accounts
        audited = accounts[:head] + self.rng.sample(accounts[head:], min(100, len(accounts) - head))
        report = audit(deps, audited)
        if not report.ok:
            problems.append(f"audit: {len(report.violations)} violations, e.g. {report.violations[0].as_dict()}")
        summary = (f"{len(self.calls):,} HTTP calls ({dict(collections.Counter(c.kind for c in self.calls))}), "
                   f"non-2xx {http_errors} (402: {payment_required}); {len(expected_entries):,} answered entries: "
                   f"{len(lost)} missing, {len(extra)} extra, {len(wrong)} wrong; {len(accounts):,} balances = "
                   f"Σ ledger = answers: {len(accounts) - len(set(balance_vs_ledger) | set(balance_vs_answers))}"
                   f"/{len(accounts)}; "
                   f"holds {len(holds):,} all captured as answered: {not bad_holds}; audit of {report.users_checked} "
                   f"accounts ({report.entries_checked:,} entries): {len(report.violations)} violations; busy account "
                   f"balance {users.get(accounts[0], {}).get('tokenBalance')} = Σ {sums[accounts[0]]} over "
                   f"{sum(1 for d in ledger.values() if d['userId'] == accounts[0]):,} entries")
        self.report.note(f"busy-account correctness: {'OK' if not problems else 'WRONG'}: {summary}"
                         + (f"; problems: {problems[:5]}" if problems else ""))
        return {"ok": not problems, "problems": problems, "summary": summary}

    # -- the report ---------------------------------------------------------------------------------
    def add_rows(self, runs: dict[str, list[RunResult]], verdict: dict) -> None:
        from bench.run import Row

        def agg(rs: list[RunResult]) -> dict:
            lat = sorted(c.ms for r in rs for c in r.calls)
            batches = sum(r.batch["batches"] for r in rs)
            return {"rate": sum(r.ops for r in rs) / sum(r.wall for r in rs), "p50": _pct(lat, 50),
                    "p99": _pct(lat, 99), "p99_worst": max(_pct(sorted(c.ms for c in r.calls), 99) for r in rs),
                    "max": lat[-1], "retries": sum(r.batch["retries"] for r in rs), "batches": batches,
                    "mean_batch": sum(r.batch["requests"] for r in rs) / batches if batches else 0.0,
                    "noise": max(r.cpu["other_cores"] for r in rs),
                    "gunicorn_ms_per_op": sum(r.cpu["cores_used"].get("gunicorn", 0) * r.cpu["wall_seconds"]
                                              for r in rs) / sum(r.ops for r in rs) * 1000,
                    "emulator_ms_per_op": sum(r.cpu["cores_used"].get("firestore emulator", 0) * r.cpu["wall_seconds"]
                                              for r in rs) / sum(r.ops for r in rs) * 1000,
                    "by_kind": {k: {"p50": _pct(sorted(c.ms for r in rs for c in r.calls if c.kind == k), 50),
                                    "p99": _pct(sorted(c.ms for r in rs for c in r.calls if c.kind == k), 99)}
                                for k in ("hold", "capture", "spend")}}

        one, spread = agg(runs["one"]), agg(runs["spread"])
        ok = verdict["ok"]
        noise = max(one["noise"], spread["noise"])
        lbl = f"{self.args.busy_accounts:,} accounts"
        print(f"  one account: {one['rate']:,.0f} ops/s, p50 {one['p50']:.1f} ms, p99 {one['p99']:.1f} ms (worst round "
              f"{one['p99_worst']:.1f}), retries {one['retries']}, mean batch {one['mean_batch']:.2f}, CPU ms/op "
              f"gunicorn {one['gunicorn_ms_per_op']:.2f} emulator {one['emulator_ms_per_op']:.2f}; by call "
              f"{_fmt_kinds(one['by_kind'])}", flush=True)
        print(f"  {lbl}: {spread['rate']:,.0f} ops/s, p50 {spread['p50']:.1f} ms, p99 {spread['p99']:.1f} ms, "
              f"retries {spread['retries']}, mean batch {spread['mean_batch']:.2f}, CPU ms/op gunicorn "
              f"{spread['gunicorn_ms_per_op']:.2f} emulator {spread['emulator_ms_per_op']:.2f}; by call "
              f"{_fmt_kinds(spread['by_kind'])}", flush=True)
        self.report.facts["busy_account"] = {
            "one": one, "spread": spread, "web_workers": self.web_workers, "web_threads": self.web_threads,
            "clients": self.args.busy_clients, "ops_per_run": self.args.busy_ops, "verdict": verdict,
            "runs": [{"label": r.label, "ops": r.ops, "wall": r.wall, "rate": r.rate, "batch": r.batch, "cpu": r.cpu}
                     for rs in runs.values() for r in rs]}
        self.report.add(Row("5. one account ops/s", one["rate"], "ops/s", spread["rate"], lbl, ">= 200 ops/s",
                            one["rate"] >= 200, ok, other_cores=noise))
        self.report.add(Row("5. one account / spread throughput", one["rate"], "ops/s", spread["rate"], lbl,
                            "ratio >= 0.5", one["rate"] / spread["rate"] >= 0.5, ok, other_cores=noise))
        self.report.add(Row("5. one account p50 per HTTP call", one["p50"], "ms", spread["p50"], lbl, "", None, ok,
                            other_cores=noise))
        self.report.add(Row("5. one account p99 per HTTP call", one["p99"], "ms", spread["p99"], lbl, "<= 150 ms",
                            one["p99"] <= 150, ok, other_cores=noise))
        self.report.add(Row("5. one account transaction retries", float(one["retries"]), "", float(spread["retries"]),
                            lbl, "0", one["retries"] == 0, ok, other_cores=noise))
        self.report.add(Row("5. one account mean batch size", one["mean_batch"], "", spread["mean_batch"], lbl, "",
                            None, ok, other_cores=noise))


def _per_op(cpu: dict, ops: int) -> dict:
    keep = ("gunicorn", "firestore emulator", "redis-server", "kernel irq")
    return {k: round(cpu["cores_used"].get(k, 0) * cpu["wall_seconds"] / ops * 1000, 2) for k in keep}


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def _fmt_kinds(by_kind: dict) -> str:
    return ", ".join(f"{k} p50 {v['p50']:.1f}/p99 {v['p99']:.1f} ms" for k, v in by_kind.items())


def run(bench) -> None:
    BusyAccount(bench).run()


# -- diagnostics ------------------------------------------------------------------------------------
def traced_app():
    """``--web-app 'bench.busy_account:traced_app()'`` (diagnostics, not a measured figure):
    web.app whose account lock writes, per batch, the gunicorn process, when it asked for the
    Redis lock, got it and let it go, to ``$BUSY_LOCK_TRACE`` (phase 5 prints what it shows)."""
    return _traced(fair=False)


def fair_lock_app():
    """``--web-app 'bench.busy_account:fair_lock_app()'``: a CANDIDATE, not tokenbank's code: as
    ``traced_app()``, with the account lock replaced by a first-come-first-served one (below), to
    measure what a fair cross-process hand-off of the account would do."""
    return _traced(fair=True)


# A FIFO lock per account: a waiter queues its token; the head of the queue holds the lock; the
# holder's release pops itself and wakes the next one (a list it waits on with BLPOP), so the
# lock goes to the process that waited longest, at once, instead of to whoever polls first.
_FAIR_RELEASE = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
local nxt = redis.call('LINDEX', KEYS[1], 0)
if nxt then
  redis.call('RPUSH', KEYS[2] .. nxt, '1')
  redis.call('PEXPIRE', KEYS[2] .. nxt, 15000)
end
return 1
"""


def _fair_lock(redis, wait_seconds: float = 10.0):
    @contextlib.contextmanager
    def lock(user_id: str):
        queue_key, wake = f"bench:fairlock:{user_id}", f"bench:fairwake:{user_id}:"
        token = secrets.token_hex(8)
        pipe = redis.pipeline(transaction=False)
        pipe.rpush(queue_key, token)
        pipe.pexpire(queue_key, 15000)
        pipe.execute()
        deadline = time.monotonic() + wait_seconds
        try:
            while redis.lindex(queue_key, 0) != token:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"fair lock on {user_id!r} not acquired in {wait_seconds}s")
                redis.blpop([wake + token], timeout=0.05)
        except BaseException:
            redis.lrem(queue_key, 1, token)
            raise
        try:
            yield
        finally:
            redis.eval(_FAIR_RELEASE, 2, queue_key, wake, token)
            redis.delete(wake + token)
    return lock


def _traced(fair: bool):
    from core.bootstrap import bootstrap
    from web.app import create_app

    deps = bootstrap()
    if fair:
        deps.batch.lock = _fair_lock(deps.redis)
    inner, path, pid = deps.batch.lock, os.environ.get("BUSY_LOCK_TRACE"), os.getpid()
    if not path:  # started by another phase (--web-app applies to phase 1 too): nothing to trace
        return create_app(deps)
    out, mutex = open(path, "a", buffering=1), threading.Lock()

    @contextlib.contextmanager
    def traced(user_id: str):
        asked = time.time()
        got = released = None
        try:
            with inner(user_id):
                got = time.time()
                try:
                    yield
                finally:
                    released = time.time()
        finally:
            with mutex:
                out.write(json.dumps([pid, user_id, asked, got, released]) + "\n")

    deps.batch.lock = traced
    return create_app(deps)


def lock_trace(path: Path, since: float, until: float, user_id: str) -> dict | None:
    """What the trace says about one account's lock between ``since`` and ``until`` (wall clock)."""
    if not path.exists():
        return None
    rows = []
    for line in path.read_text().splitlines():
        pid, user, asked, got, released = json.loads(line)
        if user == user_id and got is not None and since <= asked <= until:
            rows.append((got, released, asked, pid))
    if len(rows) < 2:
        return None
    rows.sort()
    waits = sorted((got - asked) * 1000 for got, _, asked, _ in rows)
    held = sorted((released - got) * 1000 for got, released, _, _ in rows)
    gaps = sorted(max(0.0, (rows[i + 1][0] - rows[i][1]) * 1000) for i in range(len(rows) - 1))
    same = sum(1 for i in range(len(rows) - 1) if rows[i + 1][3] == rows[i][3])
    streak = longest = 1
    for i in range(1, len(rows)):
        streak = streak + 1 if rows[i][3] == rows[i - 1][3] else 1
        longest = max(longest, streak)
    by_pid = collections.Counter(pid for *_, pid in rows)
    return {"batches": len(rows), "wait_ms_p50": _pct(waits, 50), "wait_ms_p99": _pct(waits, 99),
            "wait_ms_max": waits[-1], "held_ms_p50": _pct(held, 50), "held_ms_p99": _pct(held, 99),
            "handoff_gap_ms_p50": _pct(gaps, 50), "handoff_gap_ms_mean": sum(gaps) / len(gaps),
            "lock_busy_share": sum(held) / ((rows[-1][1] - rows[0][0]) * 1000),
            "next_batch_same_process": same / (len(rows) - 1), "longest_same_process_streak": longest,
            "batches_by_process": sorted(by_pid.values(), reverse=True)}
