"""gunicorn settings. `gunicorn -c gunicorn.conf.py wsgi:app`; override with GUNICORN_* env."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers, one per core plus one: the work is short CPU (crypto, JSON) and quick DB calls.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1))
# gunicorn's sync worker, answering what gunicorn refuses itself (a URL or headers too large,
# broken chunked encoding) with a problem document instead of its HTML page.
worker_class = "ecard.worker.ProblemWorker"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then (a bound on any slow leak); jitter avoids all restarting at once.
# A restart costs a worker's whole start-up (imports, keys, pool), about a second of CPU, so the
# bound is high: at 1 000 requests a second a worker restarts every few minutes, not every 20 s.
# 0 turns recycling off (the benchmarks do, so that no restart falls inside a measured window).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 200000))
max_requests_jitter = max_requests // 10
preload_app = False  # each worker opens its own database connections
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None  # "" turns it off
# JSON access log; the URL path is left out because it can carry card numbers.
access_log_format = ('{"event":"access","method":"%(m)s","status":%(s)s,"bytes":%(B)s,'
                     '"ms":%(M)s,"request_id":"%({x-request-id}o)s"}')


def post_worker_init(worker) -> None:
    """The database connection and the hot statements' compilation before the first request
    (`ecard.warm_up`), not inside it."""
    from ecard import warm_up

    warm_up(worker.wsgi)
