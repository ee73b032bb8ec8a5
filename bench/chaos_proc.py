"""Processes of a chaos run, by PID: each started in a session of its own and stopped as a group.

A process is identified by its pid and start time, so a pid reused by someone else is never
signalled; its group (session) holds everything it forked, so orphans are stopped too.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.processes import ROOT


def starttime(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


def proc_rows() -> list[tuple[int, int, int, int]]:
    """(pid, ppid, pgid, utime+stime) of every live process."""
    rows = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        f = raw[raw.rindex(b")") + 2:].split()
        if f[0] not in (b"Z", b"X"):
            rows.append((int(name), int(f[1]), int(f[2]), int(f[11]) + int(f[12])))
    return rows


class Abort(Exception):
    """A wait that cannot succeed any more (the process exited, or the run is stopping)."""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Abort:
            raise
        except Exception as exc:  # noqa: BLE001 - a service still starting
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))


class Proc:
    """One started process and the group (session) of everything it forks."""

    def __init__(self, name: str, args: list[str], env: dict, log_path: Path):
        self.name, self.args, self.log_path = name, args, log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                          start_new_session=True)
        self.pid = self.pgid = self.popen.pid
        self.start = starttime(self.pid)
        self.started_at = time.time()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def members(self) -> list[int]:
        """Live processes of its group; the leader only while it is still our process."""
        return [pid for pid, _, pgid, _ in proc_rows()
                if pgid == self.pgid and (pid != self.pid or starttime(pid) == self.start)]

    def children(self) -> list[tuple[int, int]]:
        """(pid, cpu ticks) of the leader's direct children."""
        return [(pid, cpu) for pid, ppid, _, cpu in proc_rows() if ppid == self.pid and self.alive()]

    def signal(self, sig: int) -> None:
        if self.members():
            try:
                os.killpg(self.pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left after ``timeout``; waits until none is left."""
        for sig, wait in ((signal.SIGCONT, 0), (signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            self.signal(sig)
            deadline = time.monotonic() + wait
            while self.members() and time.monotonic() < deadline:
                self.popen.poll()
                time.sleep(0.05)
        self.popen.poll()
        if self.members():
            print(f"chaos: {self.name} (pgid {self.pgid}) still has processes {self.members()}", file=sys.stderr)

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL to the whole group at once (no clean shutdown); waits until none is left."""
        self.signal(signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self.members() and time.monotonic() < deadline:
            self.popen.poll()
            time.sleep(0.02)
        self.popen.poll()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
