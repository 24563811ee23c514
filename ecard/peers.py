"""The federation seen from one deployment (R-54, docs/federation.md): its peers' signed trust
lists, kept in the database and held in memory, and the calls that ask a card's own region to
judge a scan of it.

A peer's list is fetched from its `base_url`, checked against the root key the federation
document names for it, and kept (`storage.keep_peer_list`) unless an older version is offered:
a restart serves and checks codes with what is kept, whether the peers are up or not. Fetching
runs on its own (`Refresher`, a thread per process, or `flask ecard federation refresh`), never
on a request's path.

A call to a peer is a POST whose `Authorization` is a JWT signed by our root (`iss` our region,
`aud` the peer's, `jti` once, `htb` the body's SHA-256, `exp` when we stop waiting for it), and
whose answer is a JWS by the peer's root naming us and our `jti`. Anything else — no answer within
ECARD_FEDERATION_TIMEOUT, an answer that does not parse, is too large or is not signed by that
peer's root — is `IssuerUnavailable`; after BREAKER_FAILURES in a row the peer's breaker answers
so at once for ECARD_FEDERATION_BREAKER seconds, then lets one call try again.

No Flask: one `Peers` per process (`create_app`), shared by its threads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

import qr
from ecard import storage
from ecard.db import Database, Tx
from ecard.federation import Federation
from qr import jws
from qr._time import parse_rfc3339
from qr.federation import FederatedTrustList, FederationInvalid, Member, verify_region_list

CALL = "ecard-federation-call"  # the `typ` of the JWT a member calls a peer with
DECISION = "ecard-federation-decision"  # the `typ` of a peer's signed answer
# A call lives as long as its caller waits for it (ECARD_FEDERATION_TIMEOUT): the issuer refuses
# one that reaches it later, so a call the caller gave up on is never judged afterwards (a code
# spent at the issuer while the caller recorded `issuer_unavailable`). The caller waits
# CLOCK_LEEWAY longer than that, so members' clocks may differ by up to it (NTP keeps them far
# closer).
MAX_CALL_LIFE = timedelta(seconds=30)
CLOCK_LEEWAY = timedelta(seconds=1)
MAX_ANSWER_BYTES = 64 * 1024  # a decision or a trust list is a few KiB; more is not an answer
BREAKER_FAILURES = 3
RETRY_FAILED_FETCH = timedelta(seconds=5)  # a peer whose list could not be fetched is tried again
KINDS = ("qr", "offline", "chip")

log = structlog.get_logger("ecard.peers")


class IssuerUnavailable(Exception):
    """The card's region did not judge the scan: down, slow, or an answer we cannot trust. Says
    which, for the log; the decision is `federation.issuer_unavailable` whatever it is."""


@dataclass
class _Breaker:
    failures: int = 0
    open_until: datetime | None = None


def body_hash(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


class Peers:
    """This deployment's federation: the document, its peers' lists, the calls to them."""

    def __init__(
        self,
        federation: Federation,
        region_code: str,
        root_key: Any,
        *,
        timeout: float,
        breaker_seconds: int,
        refresh_every: int,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.federation = federation
        self.region_code = region_code
        self._root = root_key
        self.timeout = timeout
        self.breaker_time = timedelta(seconds=breaker_seconds)
        self.refresh_every = timedelta(seconds=refresh_every)
        self.peers: dict[str, Member] = {
            code: m for code, m in federation.members.items() if code != region_code
        }
        # Replaced whole, never changed in place: a scan reads one consistent view without a lock.
        self.keys = FederatedTrustList(self.peers, {})
        self._held: dict[str, int] = {}  # region -> version of the list in `keys`
        self._breakers = {code: _Breaker() for code in self.peers}
        self._failed: dict[str, datetime] = {}  # region -> when a failed fetch may be tried again
        self._lock = threading.Lock()
        self.transport = transport  # None: the network (tests give an app's WSGI transport)
        self._client: httpx.Client | None = None
        self._client_pid: int | None = None

    # --- the peers' lists ---------------------------------------------------------------------------

    def load(self, session: Any) -> None:
        """Hold in memory the lists kept in the database (another process of this deployment may
        have fetched them). A kept list that no longer verifies against the document's root for
        its region (the document changed) is not used."""
        self._hold(storage.peer_lists(session, tokens=False))

    def _hold(self, rows: dict[str, Any]) -> None:
        """`load` from `rows` read without their tokens: a token is read (and checked) only when
        its version is not the one held, so a worker's look every tick reads no list."""
        held = {code: row.version for code, row in rows.items() if code in self.peers}
        if held == self._held:
            return
        lists = {}
        for code in held:
            try:
                lists[code] = verify_region_list(rows[code].token, self.peers[code])
            except (qr.QrError, FederationInvalid) as exc:
                log.warning("peer_list_unusable", region=code, error=str(exc))
        self.keys = FederatedTrustList(self.peers, lists)
        self._held = held

    def due(self, session: Any, now: datetime) -> list[str]:
        """The peers whose list should be fetched now: none kept, the last fetch failed, kept for
        `refresh_every`, or half its life gone. (`refresh` waits RETRY_FAILED_FETCH after its own
        failed fetch.)"""
        return self._due(storage.peer_lists(session, tokens=False), now)

    def _due(self, rows: dict[str, Any], now: datetime) -> list[str]:
        out = []
        for code in self.peers:
            row = rows.get(code)
            if row is None or row.error:
                out.append(code)
            elif (
                now >= row.fetched_at + self.refresh_every
                or now >= row.fetched_at + (row.expires_at - row.fetched_at) / 2
            ):
                out.append(code)
        return out

    def fetch(self, region: str) -> tuple[str, dict[str, Any]]:
        """`region`'s signed list from its base URL, checked against its root: (token, payload).
        Raises IssuerUnavailable saying why not."""
        member = self.peers[region]
        try:
            with self._http().stream("GET", f"{member.base_url}/api/v1/trust-list/signed") as r:
                text = _read(r).decode("ascii")
        except (httpx.HTTPError, UnicodeDecodeError) as exc:
            raise IssuerUnavailable(f"{region}: {type(exc).__name__}: {exc}") from None
        try:
            return text.strip(), verify_region_list(text.strip(), member)
        except (qr.QrError, FederationInvalid) as exc:
            raise IssuerUnavailable(f"{region}: the list does not verify: {exc}") from None

    def refresh(
        self, database: Database, now: datetime, *, regions: list[str] | None = None
    ) -> dict[str, str]:
        """Fetch the lists that are due (or `regions`), keep the good ones, and hold what is kept.
        The fetches run outside any transaction. Returns region -> "kept", "older" or the error."""
        with database.new_session(Tx.READ) as session:
            rows = storage.peer_lists(session, tokens=False)
            wanted = self._due(rows, now) if regions is None else regions
            wanted = [c for c in wanted if regions is not None or now >= self._failed.get(c, now)]
            if not wanted:
                self._hold(rows)
                return {}
        fetched: dict[str, tuple[str, dict[str, Any]] | str] = {}
        for code in wanted:
            try:
                fetched[code] = self.fetch(code)
            except IssuerUnavailable as exc:
                fetched[code] = str(exc)
                self._failed[code] = now + RETRY_FAILED_FETCH
        out = {}
        with database.new_session(Tx.WRITE) as session:
            for code, got in fetched.items():
                if isinstance(got, str):
                    storage.peer_list_failed(session, code, got, now)
                    out[code] = got
                    continue
                token, payload = got
                kept = storage.keep_peer_list(
                    session, code, token, int(payload["version"]), parse_rfc3339(payload["expires_at"]), now
                )
                out[code] = "kept" if kept else "older"
            session.commit()
            self.load(session)
        for code, outcome in out.items():
            if outcome not in ("kept", "older"):
                log.warning("peer_list_fetch_failed", region=code, error=outcome)
        return out

    def bundle(self, session: Any, own_list: str, now: datetime) -> dict[str, Any]:
        """What a gate needs for every member's codes (GET /api/v1/federation/trust-list): the
        document, each region's signed list (ours and every good one kept), and the regions whose
        list is missing or expired."""
        rows = storage.peer_lists(session)
        regions = {self.region_code: own_list}
        stale = []
        for code in sorted(self.peers):
            row = rows.get(code)
            if row is not None:
                regions[code] = row.token
            if row is None or now >= row.expires_at:
                stale.append(code)
        return {"federation": self.federation.token, "regions": regions, "stale": stale}

    # --- judging another region's card ----------------------------------------------------------------

    def issuer_of(self, kid: bytes) -> str | None:
        """The peer region that published this QR key, if one did."""
        return self.keys.region_of(kid)

    def call(self, region: str, kind: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Ask `region` to judge a scan of one of its cards (`kind`: qr, offline, chip); returns
        its decision, checked to be its answer to this call. Raises IssuerUnavailable."""
        member = self.peers[region]
        breaker = self._breakers[region]
        with self._lock:
            if breaker.open_until is not None and now < breaker.open_until:
                raise IssuerUnavailable(f"{region}: breaker open until {breaker.open_until.isoformat()}")
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        jti = uuid.uuid4().hex
        claims = {
            "iss": self.region_code,
            "aud": region,
            "iat": round(now.timestamp(), 3),
            "exp": round(now.timestamp() + self.timeout, 3),
            "jti": jti,
            "htu": kind,
            "htb": body_hash(data),
        }
        token = jws.sign(claims, self._root, kid=self.region_code, typ=CALL)
        try:
            decision = self._post(member, kind, token, data, jti)
        except IssuerUnavailable:
            with self._lock:
                breaker.failures += 1
                if breaker.failures >= BREAKER_FAILURES:
                    breaker.open_until = now + self.breaker_time
            raise
        with self._lock:
            breaker.failures, breaker.open_until = 0, None
        return decision

    def _post(self, member: Member, kind: str, token: str, data: bytes, jti: str) -> dict[str, Any]:
        url = f"{member.base_url}/api/v1/federation/verifications/{kind}"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            with self._http().stream("POST", url, content=data, headers=headers) as r:
                answer = _read(r).decode("ascii")
        except (httpx.HTTPError, UnicodeDecodeError) as exc:
            raise IssuerUnavailable(f"{member.region_code}: {type(exc).__name__}: {exc}") from None
        try:
            payload = jws.verify(answer.strip(), member.root_key, typ=DECISION)
        except qr.QrError as exc:
            raise IssuerUnavailable(f"{member.region_code}: the answer does not verify: {exc}") from None
        if payload.get("iss") != member.region_code or payload.get("aud") != self.region_code:
            raise IssuerUnavailable(f"{member.region_code}: the answer is not for us")
        if payload.get("jti") != jti or not isinstance(payload.get("decision"), dict):
            raise IssuerUnavailable(f"{member.region_code}: the answer is not to this call")
        return payload["decision"]

    def _http(self) -> httpx.Client:
        """The process's pooled client (made after a fork, never shared across one). Connection
        failures are retried once; a request that reached the peer is not: its `jti` is spent."""
        if self._client is None or self._client_pid != os.getpid():
            self._client = httpx.Client(
                timeout=httpx.Timeout(self.timeout + CLOCK_LEEWAY.total_seconds()),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                transport=self.transport or httpx.HTTPTransport(retries=1),
                follow_redirects=False,
            )
            self._client_pid = os.getpid()
        return self._client

    # --- the issuer's side: a peer's call ---------------------------------------------------------------

    def check_call(self, authorization: str | None, kind: str, body: bytes, now: datetime) -> PeerCall:
        """The call, if `authorization` is a member's call to us for `kind` with this `body`,
        live at `now`. Its `jti` is taken once by the judging (`storage.take_federation_call`).
        Raises CallRefused."""
        if not authorization or not authorization.startswith("Bearer "):
            raise CallRefused("no call token")
        token = authorization[len("Bearer ") :].strip()
        try:
            member = self.peers.get(str(jws.header(token).get("kid")))
        except qr.QrError:
            member = None
        if member is None:
            raise CallRefused("not a call of a member of the federation")
        try:
            claims = jws.verify(token, member.root_key, typ=CALL)
        except qr.QrError as exc:
            raise CallRefused(
                f"the call does not verify against {member.region_code}'s root: {exc}"
            ) from None
        try:
            issued = datetime.fromtimestamp(float(claims["iat"]), now.tzinfo)
            expires = datetime.fromtimestamp(float(claims["exp"]), now.tzinfo)
            jti = str(claims["jti"])
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            raise CallRefused("the call has no readable iat, exp and jti") from None
        if claims.get("iss") != member.region_code or claims.get("aud") != self.region_code:
            raise CallRefused("the call is not from its signer to us")
        if claims.get("htu") != kind or claims.get("htb") != body_hash(body):
            raise CallRefused("the call was made for another request")
        # No leeway after `exp`: the caller stops waiting at `exp` + CLOCK_LEEWAY by its clock.
        if expires - issued > MAX_CALL_LIFE or now >= expires or issued > now + CLOCK_LEEWAY:
            raise CallRefused("the call has expired or is not yet valid")
        if not 16 <= len(jti) <= 64:
            raise CallRefused("the call's jti is not 16 to 64 characters")
        return PeerCall(member.region_code, jti, expires)

    def answer(self, call: PeerCall, decision: dict[str, Any]) -> str:
        """Our signed answer to a peer's `call`."""
        payload = {"iss": self.region_code, "aud": call.region_code, "jti": call.jti, "decision": decision}
        return jws.sign(payload, self._root, kid=self.region_code, typ=DECISION)


@dataclass(frozen=True)
class PeerCall:
    """A peer region's call, checked: who calls, its `jti`, until when the `jti` must be kept."""

    region_code: str
    jti: str
    keep_until: datetime


class CallRefused(Exception):
    """A peer's call we do not take: says why."""


def _read(response: httpx.Response) -> bytes:
    """The body of a 200 answer, at most MAX_ANSWER_BYTES. Raises httpx.HTTPError otherwise."""
    if response.status_code != 200:
        raise httpx.HTTPStatusError(
            f"HTTP {response.status_code}", request=response.request, response=response
        )
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise httpx.DecodingError(f"the answer is over {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Refresher(threading.Thread):
    """Keeps the peers' lists fresh in one process: every few seconds it holds what the database
    keeps (another process may have fetched) and fetches what is due. Daemon: it dies with the
    process; a failure is logged and tried again, never raised."""

    TICK = 2.0  # seconds between looks at the database

    def __init__(self, peers: Peers, database: Database, clock: Any) -> None:
        super().__init__(name="ecard-peers", daemon=True)
        self.peers, self.database, self.clock = peers, database, clock
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.peers.refresh(self.database, self.clock())
            except Exception as exc:  # a database that is down: the next tick tries again
                log.warning("peer_refresh_failed", error=f"{type(exc).__name__}: {exc}")
            self.stopping.wait(self.TICK)
