"""ecard: the backend of the electronic social security card."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_openapi3 import Info, OpenAPI
from werkzeug.middleware.proxy_fix import ProxyFix

from ecard import config as config_module
from ecard import storage
from ecard.api import edge, logs
from ecard.context import Services
from ecard.hashing import Hasher
from ecard.pii import Vault
from ecard.secrets import SUITES, load_or_create

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def warm_up(app: OpenAPI) -> bool:
    """Pay a worker's one-time costs before its first request rather than in it: the first
    database connection (and the dialect's first-connect checks), the mappers, the compilation
    of every prepared statement of the hot paths, the Redis connections: otherwise a fresh
    worker's first requests pay them (docs/performance.md). gunicorn calls this once per worker
    (`post_worker_init`). A database that is down only postpones the costs (False).

    Last, everything the worker has built so far (modules, the app, mappers, compiled
    statements) is moved out of the garbage collector's sight (`gc.freeze`): none of it is ever
    freed, yet a full collection would walk all of it, a pause in the middle of some request;
    after the freeze it walks only what requests left behind."""
    import gc

    import sqlalchemy as sa
    import structlog

    try:
        with app.app_context():
            sa.orm.configure_mappers()
            with app.extensions["ecard.db"].reading_connection() as conn:
                conn.execute(sa.text("SELECT 1"))
                storage.Prepared.compile_all(conn.dialect)
        app.extensions["ecard.limits"].connect()
        ready = True
    except sa.exc.SQLAlchemyError as exc:
        structlog.get_logger("ecard").warning("warm_up_postponed", error=type(exc).__name__)
        ready = False
    gc.collect()  # what start-up left as garbage goes now, not frozen with the rest
    gc.freeze()
    return ready


def start_refresher(app: OpenAPI) -> None:
    """Keep the federation's peer lists fresh from this process, on a thread of its own
    (`ecard.peers.Refresher`): gunicorn starts one per worker (`post_worker_init`). Nothing in a
    deployment outside a federation."""
    peers = app.extensions["ecard.services"].peers
    if peers is not None:
        from ecard.context import utcnow
        from ecard.peers import Refresher

        Refresher(peers, app.extensions["ecard.db"], utcnow).start()


def _federation(settings: dict[str, Any], root_public: Any, now: Any) -> Any:
    """The federation this deployment belongs to (None: none), read and checked at start: a
    document that does not verify against the pinned anchor, has expired or does not name this
    region with its root stops the start, naming the variable (docs/federation.md)."""
    import json

    from ecard import federation

    file, anchor = settings["ECARD_FEDERATION_FILE"], settings["ECARD_FEDERATION_ANCHOR"]
    if not file and not anchor:
        return None
    if not file or not anchor:
        missing = "ECARD_FEDERATION_ANCHOR" if file else "ECARD_FEDERATION_FILE"
        raise ValueError(f"{missing}: a federation needs both its document and its pinned anchor")
    try:
        pinned = federation.load_public(json.loads(Path(anchor).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ValueError(f"ECARD_FEDERATION_ANCHOR: {exc}") from None
    try:
        token = Path(file).read_text(encoding="utf-8")
        return federation.load(
            token, pinned, region_code=settings["ECARD_REGION_CODE"], root_key=root_public, now=now
        )
    except (OSError, ValueError) as exc:
        raise ValueError(f"ECARD_FEDERATION_FILE: {exc}") from None


def create_app(config: dict[str, Any] | None = None) -> OpenAPI:
    """Build the app: defaults -> ECARD_* environment -> `config` overrides."""
    from ecard.api import problems
    from ecard.api.schemas import Problem

    settings = config_module.load(config)
    app = OpenAPI(
        __name__,
        info=Info(title="ecard — electronic social security card", version="1.0.0"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        doc_prefix="/api/v1",
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_model=Problem,
        validation_error_callback=problems.validation_problem,
    )
    app.config.update(settings)
    if settings["ECARD_TRUSTED_PROXIES"]:
        # The client is the address the trusted proxies name, not theirs: the abuse limits count
        # it. With none, X-Forwarded-For is ignored: anyone can write one.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings["ECARD_TRUSTED_PROXIES"])  # type: ignore[method-assign]
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    logs.configure(settings["ECARD_LOG_LEVEL"])

    keys_dir = Path(settings["ECARD_KEYS_DIR"] or Path(app.instance_path) / "keys")
    app.config["ECARD_KEYS_DIR"] = str(keys_dir)
    production = settings["ECARD_ENV"] == "production"
    suite = SUITES[settings["ECARD_CRYPTO_SUITE"]]
    secrets = load_or_create(keys_dir, allow_create=not production, suite=suite)
    app.extensions["ecard.services"] = Services(
        vault=Vault(secrets),
        hasher=Hasher(
            secrets.pin_pepper,
            time_cost=settings["ECARD_ARGON2_TIME_COST"],
            memory_kib=settings["ECARD_ARGON2_MEMORY_KIB"],
        ),
        config=settings,
        keys_dir=keys_dir,
    )

    import qr
    from ecard.context import utcnow

    app.extensions["ecard.qr_ring"] = qr.KeyRing.load_or_create(
        keys_dir / "qr", utcnow(), settings["ECARD_REGION_CODE"], create=not production, alg=suite.qr_alg
    )  # a new ring's first key; an existing ring changes by `keys rotate`
    # The region's root key: it signs the region's trust list, and a federation's anchor
    # signs its public part. Kept beside the ring, of the suite's algorithm; provisioned in
    # production.
    app.extensions["ecard.root_key"] = qr.keys.load_or_create_root(
        keys_dir / "root", suite.qr_alg, create=not production
    )
    federation = _federation(settings, app.extensions["ecard.root_key"].public_key(), utcnow())
    app.extensions["ecard.federation"] = federation
    if federation is not None:
        import dataclasses

        from ecard.peers import Peers

        peers = Peers(
            federation,
            settings["ECARD_REGION_CODE"],
            app.extensions["ecard.root_key"],
            timeout=settings["ECARD_FEDERATION_TIMEOUT"],
            breaker_seconds=settings["ECARD_FEDERATION_BREAKER"],
            refresh_every=settings["ECARD_FEDERATION_REFRESH"],
        )
        app.extensions["ecard.services"] = dataclasses.replace(app.extensions["ecard.services"], peers=peers)

    url = settings["ECARD_DATABASE_URL"] or f"sqlite:///{Path(app.instance_path) / 'ecard.sqlite'}"
    app.config["ECARD_DATABASE_URL"] = url
    from ecard.api import transactions

    transactions.init_app(app, url)
    Migrate(directory=str(MIGRATIONS), render_as_batch=True, compare_type=True).init_app(app)

    app.config.update(
        MAX_CONTENT_LENGTH=settings["ECARD_MAX_BODY_BYTES"],
        JSON_AS_ASCII=False,
        JWT_SECRET_KEY=secrets.jwt_secret,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],  # pinned: `alg: none` and key confusion are refused
        JWT_TOKEN_LOCATION=["headers"],
        JWT_DECODE_LEEWAY=5,  # seconds of clock difference between instances
        JWT_ENCODE_AUDIENCE="ecard-api",
        JWT_DECODE_AUDIENCE="ecard-api",
        JWT_ENCODE_ISSUER=settings["ECARD_ISSUER"],
        JWT_DECODE_ISSUER=settings["ECARD_ISSUER"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=settings["ECARD_ACCESS_TOKEN_TTL"]),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=settings["ECARD_REFRESH_TOKEN_TTL"]),
    )
    JWTManager(app)  # mints the tokens; `auth.bearer_claims` checks them
    problems.register(app)

    from prometheus_client import CollectorRegistry
    from prometheus_flask_exporter import PrometheusMetrics

    from ecard.api import idempotency, limits

    limits.init_app(app)
    # /metrics; the request metrics themselves are observed by `logs` (see there why).
    metrics = PrometheusMetrics(app, registry=CollectorRegistry(), export_defaults=False)
    logs.init_app(app, metrics.registry)  # first, so every later hook and error has the request id
    edge.init_app(app)  # the URL and the body checked before any route; nosniff and no-store on responses

    idempotency.init_app(app)

    from ecard.api import codes, family, federation, holder, operator, pages, service, tokens, verifications

    app.register_api(tokens.bp)
    app.register_api(operator.bp)
    app.register_api(holder.bp)
    app.register_api(family.bp)
    app.register_api(codes.bp)
    app.register_api(verifications.bp)
    app.register_api(federation.bp)
    app.register_blueprint(service.bp)
    pages.init_app(app)  # /h5/, /scan/, /window/: the pages people use (ecard.api.pages)
    transactions.check_declared(
        app, ("tokens", "operator", "holder", "family", "codes", "verifications", "federation", "service")
    )

    from ecard import cli

    cli.init_app(app)
    return app
