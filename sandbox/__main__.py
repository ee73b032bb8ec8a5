"""python -m sandbox --host 127.0.0.1 --port 12111 --webhook-url URL --webhook-secret whsec_..."""

from __future__ import annotations

import logging
import signal
import sys

from werkzeug.serving import make_server

from .app import create_app, start_expirer
from .config import parse_args


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    if not config.log_requests:  # werkzeug's per-request lines only with --log-requests
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Bind first so that --port 0 can report the port it got.
    holder = {}
    server = make_server(config.host, config.port, app=lambda environ, start: holder["app"](environ, start),
                         threaded=True)
    port = server.server_port
    public_url = config.public_url or f"http://{config.host}:{port}"
    app = create_app(config, public_url)
    holder["app"] = app
    sandbox = app.config["SANDBOX"]
    stop_expirer = start_expirer(sandbox)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if config.webhook_urls and not config.webhook_secrets:
        print("[sandbox] warning: webhook URLs set but no --webhook-secret / STRIPE_WEBHOOK_SECRET; "
              "events will carry a signature header with no v1", file=sys.stderr, flush=True)
    print(f"[sandbox] listening on http://{config.host}:{port} (public {public_url}); "
          f"webhooks -> {', '.join(config.webhook_urls) or 'none'}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop_expirer.set()
        sandbox.dispatcher.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
