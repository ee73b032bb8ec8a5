"""The message broker's contract, shared by whoever publishes and whoever consumes.

- ``broker.task_names``: the stable task names and the default queue;
- ``broker.producer``: a Celery app configured for publishing only (the web tier, the
  operators' CLI), and the settings the worker's app shares with it;
- ``broker.event_queue``: the queue port on Celery (enqueue an event, request a fulfilment).

The web tier and the CLI import this package, never ``worker/``; the worker imports it for the
task names and the shared settings. It imports none of web, worker or admin.
"""
