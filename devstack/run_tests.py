"""`make test`: make sure the services the suite needs are there, run pytest, clean up.

Redis: the machine's server on 127.0.0.1:6379 if it answers, else one started here (and
stopped here, by PID, whatever the outcome). The Firestore emulator and Celery workers are
started by the test fixtures themselves. Exit status is pytest's.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

from devstack.processes import FIRESTORE_JAR, ROOT, redis_answers, start_redis


def main(argv: list[str]) -> int:
    if not FIRESTORE_JAR.exists() or not shutil.which("java"):
        print(f"The Cloud Firestore emulator is missing ({FIRESTORE_JAR}).\n"
              "Install the Debian package google-cloud-cli-firestore-emulator (and a Java runtime) "
              "from Google Cloud's apt repository, then run `make test` again.", file=sys.stderr)
        return 2
    started = None
    if not redis_answers():
        print("no Redis answers on 127.0.0.1:6379; starting one for the test run")
        started = start_redis(6379)
    try:
        args = [sys.executable, "-m", "pytest", *(argv or ["tests"])]
        return subprocess.call(args, cwd=ROOT)
    finally:
        if started is not None:
            started.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
