"""HTTP load for the benchmark.

- ``run_wrk``: closed loop at a fixed number of connections with Debian's ``wrk`` (C, epoll,
  one thread); a Lua script (bench/webhook.lua) sends pre-signed bodies in order.
- ``run_python_closed_loop``: the fallback when wrk is missing: processes x threads, each thread one
  persistent http.client connection. On 2 cores it competes with the server for CPU and
  caps the bare baseline well below what wrk measures; the report says which one ran.
- ``open_loop``: sends requests on a fixed schedule (N per second), whatever the answers
  take, from a few threads with persistent connections; records each send's wall-clock time.
"""
from __future__ import annotations

import http.client
import itertools
import json
import multiprocessing
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).with_name("webhook.lua")


@dataclass
class ClosedLoopResult:
    tool: str
    seconds: float
    requests: int
    errors: int  # connect/read/write/timeout errors plus non-2xx/3xx answers
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    wraps: int = 0  # times the body list was exhausted and restarted (event ids repeat)
    generator_cpu_seconds: float = 0.0
    detail: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.errors


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def write_bodies(path: Path, requests: list[tuple[bytes, str]]) -> None:
    """One line a request: signature TAB body (bodies are single-line JSON)."""
    with open(path, "wb") as f:
        for body, signature in requests:
            assert b"\n" not in body and "\t" not in signature
            f.write(signature.encode() + b"\t" + body + b"\n")


def run_wrk(url: str, bodies_file: Path, seconds: float, connections: int, first_index: int = 0,
            track=None) -> ClosedLoopResult:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
            "-s", str(LUA), url, "--", str(bodies_file), str(first_index)]
    before = os.times()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if track is not None:
        track(proc)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = os.times()
    text = out.decode(errors="replace")
    line = next((l for l in text.splitlines() if l.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}):\n{text}")
    data = json.loads(line[len("BENCH_JSON "):])
    errors = (data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["status_errors"]
              + data["timeouts"])
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return ClosedLoopResult("wrk", data["duration_us"] / 1e6, data["requests"], errors, data["p50_us"] / 1000,
                            data["p90_us"] / 1000, data["p99_us"] / 1000, data["mean_us"] / 1000,
                            data["max_us"] / 1000, data["wraps"], cpu, data)


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def _closed_loop_process(host, port, path, requests, stride, offset, threads, deadline, out):
    counter = itertools.count(offset, stride)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run():
        conn = http.client.HTTPConnection(host, port, timeout=5)
        mine, bad = [], 0
        while time.monotonic() < deadline:
            body, signature = requests[next(counter) % len(requests)]
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json", "Stripe-Signature": signature})
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 400:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=5)
            mine.append(time.perf_counter() - started)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0], next(counter)))


def run_python_closed_loop(host: str, port: int, path: str, requests: list[tuple[bytes, str]], seconds: float,
                           connections: int, first_index: int = 0, processes: int = 2,
                           track=None) -> ClosedLoopResult:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    processes = max(1, min(processes, connections))
    per = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    started = time.monotonic()
    deadline = started + seconds
    procs = [ctx.Process(target=_closed_loop_process,
                         args=(host, port, path, requests, processes, first_index + i, per[i], deadline, out))
             for i in range(processes)]
    before = os.times()
    for p in procs:
        p.start()
        if track is not None:
            track(p)
    latencies, errors, sent = [], 0, 0
    for _ in procs:
        lat, err, nxt = out.get(timeout=seconds + 60)
        latencies.extend(lat)
        errors += err
    elapsed = time.monotonic() - started
    for p in procs:
        p.join(10)
    after = os.times()
    latencies.sort()
    n = len(latencies)
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return ClosedLoopResult("python http.client (%d procs x threads)" % processes, elapsed, n, errors,
                            _percentile(latencies, 50) * 1000, _percentile(latencies, 90) * 1000,
                            _percentile(latencies, 99) * 1000, (sum(latencies) / n * 1000) if n else 0.0,
                            (latencies[-1] * 1000) if n else 0.0, (first_index + n) // max(1, len(requests)), cpu)


@dataclass
class Sent:
    index: int
    sent_at: float  # time.time() just before the request was written
    scheduled_lag: float  # seconds between the schedule and the actual send
    response_ms: float
    status: int


def open_loop(host: str, port: int, path: str, requests: list[tuple[bytes, dict]], rate: float,
              senders: int = 8) -> list[Sent]:
    """Send ``requests`` at ``rate`` per second, on schedule, over ``senders`` persistent connections."""
    work: queue.Queue = queue.Queue()
    results: list[Sent | None] = [None] * len(requests)

    def sender():
        conn = http.client.HTTPConnection(host, port, timeout=10)
        while True:
            item = work.get()
            if item is None:
                break
            i, due = item
            body, headers = requests[i]
            sent_at = time.time()
            lag = time.perf_counter() - due
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
            results[i] = Sent(i, sent_at, lag, (time.perf_counter() - started) * 1000, status)
        conn.close()

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
    for t in pool:
        t.start()
    start = time.perf_counter() + 0.05
    for i in range(len(requests)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        work.put((i, due))
    for _ in pool:
        work.put(None)
    for t in pool:
        t.join(60)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"open loop: {len(missing)} requests never completed")
    return results  # type: ignore[return-value]


def percentile(values: list[float], pct: float) -> float:
    return _percentile(sorted(values), pct)
