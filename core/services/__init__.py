"""Use cases: each function takes its dependencies (``deps``, and a queue where it enqueues) and
returns plain data. The web tier, the workers and the operators' CLI call these."""
