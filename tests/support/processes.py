"""Test-side name for the process helpers, which live in devstack (shared with `make dev`)."""
from devstack.processes import *  # noqa: F401,F403
from devstack.processes import ROOT, ARTIFACTS, FIRESTORE_JAR  # noqa: F401
