"""gunicorn settings. `gunicorn -c gunicorn.conf.py wsgi:app`; override with GUNICORN_* env."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers, one per core plus one: the work is short CPU (crypto, JSON) and quick DB calls.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 20
keepalive = 5
max_requests = 20000  # recycle workers now and then; jitter avoids all restarting at once
max_requests_jitter = 2000
preload_app = False  # each worker opens its own database connections
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None  # "" turns it off
# JSON access log; the URL path is left out because it can carry card numbers.
access_log_format = ('{"event":"access","method":"%(m)s","status":%(s)s,"bytes":%(B)s,'
                     '"ms":%(M)s,"request_id":"%({x-request-id}o)s"}')
