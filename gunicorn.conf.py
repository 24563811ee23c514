"""gunicorn settings. `gunicorn -c gunicorn.conf.py wsgi:app`; override with GUNICORN_* env."""

import hashlib
import multiprocessing
import os
import re

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers, one per core plus one: the work is short CPU (crypto, JSON) and quick DB calls.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1))
# gunicorn's sync worker, answering what gunicorn refuses itself (a URL or headers too large,
# broken chunked encoding) with a problem document instead of its HTML page.
worker_class = "ecard.api.worker.ProblemWorker"
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
access_log_format = (
    '{"event":"access","method":"%(m)s","status":%(s)s,"bytes":%(B)s,'
    '"ms":%(M)s,"request_id":"%({x-request-id}o)s"}'
)

# gunicorn's control socket (`gunicornc`) is by default one path per user ($XDG_RUNTIME_DIR or
# ~/.gunicorn, gunicorn.ctl), which every instance on the machine would share: each start takes
# it over and each stop removes it. Here each instance has its own, named after its binds
# (`on_starting`). GUNICORN_CONTROL_SOCKET gives the path instead; "" turns the socket off.
if os.environ.get("GUNICORN_CONTROL_SOCKET") == "":
    control_socket_disable = True
elif os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]


def on_starting(server) -> None:
    """The instance's own control socket, beside gunicorn's default, named after the binds in
    effect: `--bind` on the command line (scripts/run) overrides `bind` above, so they are known
    only now. A path set on the command line or by GUNICORN_CONTROL_SOCKET is kept."""
    cfg = server.cfg
    default = cfg.settings["control_socket"].default
    if cfg.control_socket_disable or cfg.control_socket != default:
        return
    name = re.sub(r"[^A-Za-z0-9.]+", "-", " ".join(cfg.bind)).strip("-")
    if len(name) > 40:  # a socket's path is at most 107 bytes: a long one (unix:/...) by its digest
        name = hashlib.sha256(name.encode()).hexdigest()[:16]
    cfg.set("control_socket", os.path.join(os.path.dirname(default), f"ecard-{name}.ctl"))


def post_worker_init(worker) -> None:
    """The database connection and the hot statements' compilation before the first request
    (`ecard.warm_up`), not inside it; in a federation, the thread that keeps the peers' lists
    fresh (`ecard.start_refresher`), one per worker: threads do not survive a fork."""
    from ecard import start_refresher, warm_up

    warm_up(worker.wsgi)
    start_refresher(worker.wsgi)
