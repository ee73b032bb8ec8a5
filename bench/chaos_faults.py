"""The faults, injected one after another while the webhooks are being sent.

Each fault waits for its moment (a share of the send window) and for the previous fault's
recovery (a restarted process ready again), then acts and records what it did and when:

- ``child``: SIGKILL one Celery pool process, one that is running a task if one is within 3 s;
- ``worker``: SIGKILL the Celery main process; the supervisor stops what it left and starts a
  new worker (as systemd or a container runtime would);
- ``redis``: SIGKILL redis-server and start it again, empty, on the same port;
- ``firestore``: SIGSTOP the emulator's JVM for ``stall`` seconds, then SIGCONT;
- ``web``: SIGKILL the gunicorn master and its workers; the supervisor starts it again.
"""
from __future__ import annotations

import os
import signal
import threading
import time

# (share of the send window, fault): the default order of a run.
IDLE = ("anon_pipe_read", "pipe_read", "")  # where an idle pool process waits for its next task
PLAN = [(0.08, "child"), (0.18, "web"), (0.28, "child"), (0.38, "firestore"), (0.50, "child"),
        (0.60, "worker"), (0.72, "child"), (0.84, "redis")]


class Faults:
    def __init__(self, stack, sender, plan=PLAN, stall_seconds: float = 6.0):
        self.stack, self.sender, self.plan, self.stall = stack, sender, plan, stall_seconds
        self.records: list[dict] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="faults")
        self.firestore_stopped = False

    def start(self) -> None:
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()

    @property
    def last_fault_at(self) -> float | None:
        return max((r["ended_at"] for r in self.records), default=None)

    def _run(self) -> None:
        try:
            for share, fault in self.plan:
                while self.sender.progress() < share:
                    if self.stack.stopping.is_set():
                        return
                    time.sleep(0.05)
                if self.stack.stopping.is_set():
                    return
                record = {"fault": fault, "planned_share": share, "started_at": time.time()}
                record.update(getattr(self, f"_{fault}")() or {})
                record["ended_at"] = time.time()
                record["send_progress"] = round(self.sender.progress(), 3)
                self.records.append(record)
                print(f"chaos: fault {fault} at {record['started_at'] - self.sender.started_at:.1f}s "
                      f"({record['ended_at'] - record['started_at']:.1f}s) {record.get('detail', '')}", flush=True)
        except BaseException as exc:  # noqa: BLE001 - reported by the harness
            self.error = exc
        finally:
            self.resume_firestore()

    def _ready(self, name: str, after: float, timeout: float = 120) -> dict:
        """Wait until the supervisor has started ``name`` again after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stack.stopping.is_set():
            proc = self.stack.procs[name]
            if proc.started_at > after and any(e.get("new_pid") == proc.pid for e in self.stack.exits):
                return {"new_pid": proc.pid, "back_after_s": round(time.time() - after, 2)}
            time.sleep(0.05)
        raise TimeoutError(f"{name} was not started again within {timeout}s")

    def _live_worker(self, timeout: float = 120):
        """The current worker once it runs its whole pool (it may be restarting after a crash)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stack.stopping.is_set():
            worker = self.stack.procs["worker"]
            if worker.alive() and len(worker.children()) >= self.stack.concurrency:
                return worker
            time.sleep(0.05)
        raise TimeoutError(f"no running worker within {timeout}s")

    def _child(self) -> dict:
        """SIGKILL a pool process that is running a task (an idle one waits in ``anon_pipe_read``)."""
        worker = self._live_worker()
        deadline, children, wchan = time.monotonic() + 3.0, [], {}
        while time.monotonic() < deadline:
            children = [pid for pid, _ in worker.children()]
            wchan = {pid: _wchan(pid) for pid in children}
            busy = [pid for pid, w in wchan.items() if w not in IDLE]
            if busy:
                pid = busy[0]
                break
            time.sleep(0.005)
        else:
            if not children:
                worker = self._live_worker()
                children = [pid for pid, _ in worker.children()]
            pid = children[0]
        os.kill(pid, signal.SIGKILL)
        in_task = wchan.get(pid, "") not in IDLE
        return {"pid": pid, "worker_pid": worker.pid, "wchan": wchan.get(pid), "in_task": in_task,
                "detail": f"pool process {pid} of worker {worker.pid} ({'in a task' if in_task else 'idle'}: "
                          f"{wchan.get(pid)})"}

    def _worker(self) -> dict:
        worker = self._live_worker()
        with self.stack.lock:
            self.stack.expected.add("worker")
        killed = time.time()
        os.kill(worker.pid, signal.SIGKILL)
        back = self._ready("worker", killed)
        return {"pid": worker.pid, **back, "detail": f"main process {worker.pid}; new worker {back['new_pid']} "
                                                     f"ready after {back['back_after_s']}s"}

    def _web(self) -> dict:
        web = self.stack.procs["web"]
        with self.stack.lock:
            self.stack.expected.add("web")
        killed = time.time()
        web.signal(signal.SIGKILL)
        back = self._ready("web", killed)
        return {"pid": web.pid, **back, "detail": f"gunicorn {web.pid} and its workers; back after "
                                                  f"{back['back_after_s']}s"}

    def _redis(self) -> dict:
        old = self.stack.procs["redis"]
        killed = time.time()
        old.kill()  # SIGKILL: no shutdown, nothing saved (and no persistence is configured)
        new = self.stack.start_redis()
        import redis

        keys = redis.Redis(port=self.stack.ports["redis"], db=1).dbsize()
        return {"pid": old.pid, "new_pid": new.pid, "down_s": round(time.time() - killed, 2),
                "keys_after_restart": keys,
                "detail": f"redis {old.pid} killed, {new.pid} up empty ({keys} keys) after "
                          f"{time.time() - killed:.2f}s"}

    def _firestore(self) -> dict:
        jvm = self.stack.procs["firestore"].pid
        os.kill(jvm, signal.SIGSTOP)
        self.firestore_stopped = True
        try:
            end = time.monotonic() + self.stall
            while time.monotonic() < end and not self.stack.stopping.is_set():
                time.sleep(0.05)
        finally:
            self.resume_firestore()
        return {"pid": jvm, "stall_s": self.stall, "detail": f"JVM {jvm} stopped for {self.stall:.0f}s"}

    def resume_firestore(self) -> None:
        if self.firestore_stopped:
            try:
                os.kill(self.stack.procs["firestore"].pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.firestore_stopped = False


def _wchan(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip()
    except OSError:
        return ""
