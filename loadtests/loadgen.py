"""A small closed-loop HTTP load generator for `loadtests.bench`, in the manner of wrk.

`clients` connections run at once, spread over `procs` processes (threads inside each), each
sending its own pre-built raw HTTP/1.1 requests back to back: the next request leaves when the
answer to the last one has arrived. Requests are bytes prepared before the timed window, and the
answer is parsed only as far as status line, Content-Length and `"accepted":false`, so a request
costs the client some 30 us of Python, far less than the server spends on it.

gunicorn's sync workers close the connection after every answer (they force `Connection: close`),
so a client reconnects for each request; the measured latency includes that connect, as any
client of a sync-worker server sees it.

Why not locust or wrk (issue 14; measured on /healthz, 16 connections, 10 s, 2 December, the
same server, the three in the same minute, kernel time included):

- locust cannot measure the server's capacity on this machine: its client costs 0.4-1 ms of CPU
  a request (this generator 0.13-0.2, wrk 0.1), on the same two cores as the server, and caps
  the rate it measures: 875 req/s where this generator got 1 116 and wrk 1 155 (the machine
  busy with other work). At the /healthz rate of a quiet machine (1 800-2 700 a second) it would
  take a whole core of the two. locust stays the tool of the paced, mixed load test
  (run_locust.py).
- wrk (Debian's 4.1.0) is cheaper per request, but measures something else, and cannot run two
  of the four plans as they are measured here:
  * its clock starts once the connection is made (wrk.c, socket_writeable; every `Connection:
    close` answer makes it reconnect), so a connect that waits, e.g. a SYN retransmitted after
    1 s when the listen queue overflows, is in no latency it reports; here a request's latency
    runs from the connect to the answer's last byte;
  * single-use plans (`verify`, `chip`): each request sent once and, for a chip, in the order
    its counter rises on one connection, and the window ending for every client when the first
    runs out, its rate computed over the window actually run. wrk's `request()` belongs to a
    thread whose connections share it (one connection a thread keeps a card's reads in order),
    and `thread:stop()` stops one thread while the rate is still divided by the whole `-d`.
  Counting `"accepted":false` answers wrk could do in a Lua `response()`. For the two plans that
  repeat (`healthz`, `issue`) wrk would do; one tool for the four is the simpler benchmark.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import socket
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_REJECTED = re.compile(rb'"accepted":\s*false')
_REASON = re.compile(rb'"reason":\s*"([^"]*)"')


def build_request(
    method: str, path: str, *, host: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    """The raw bytes of one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: ecard-loadgen"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


@dataclass
class Plan:
    """What each client sends. `cycle`: send a client's list round and round (requests that can
    repeat, like issuing a code); otherwise each request is sent once (a code is single use) and
    the run stops early, with `exhausted` set, when the first client has none left."""

    name: str
    per_client: list[list[bytes]]
    cycle: bool


@dataclass
class Result:
    name: str
    clients: int
    seconds: float  # the timed window actually run
    requests: int
    errors: int  # non-2xx answers and failed exchanges
    rejected: int  # 200 decisions with accepted=false
    statuses: dict[str, int]
    rejected_reasons: dict[str, int]
    error_samples: list[str]
    exhausted: bool
    latencies_ms: list[float] = field(repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "clients": self.clients,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p90_ms": round(self.percentile(90), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms, default=0), 2),
            "errors": self.errors,
            "rejected": self.rejected,
            "statuses": self.statuses,
            "rejected_reasons": self.rejected_reasons,
            "error_samples": self.error_samples,
            "exhausted": self.exhausted,
        }


class _Conn:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        s = socket.create_connection(self.addr, timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request, return (status, body). Reconnects when the server closed."""
        reused = self.sock is not None
        try:
            return self._exchange(request)
        except (ConnectionError, socket.timeout, OSError):
            self.close()
            if not reused:
                raise
            return self._exchange(request)  # a kept-alive connection the server had dropped

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = self._connect()
        s = self.sock
        s.sendall(request)
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the answer")
            buf += chunk
        head, body = buf[:end], buf[end + 4 :]
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        length = 0
        if i >= 0:
            j = lower.find(b"\r\n", i + 2)
            length = int(lower[i + 17 : j if j > 0 else len(lower)])
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed in the body")
            body += chunk
        if b"\r\nconnection: close" in lower or i < 0:
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None


def _client(
    addr, requests: list[bytes], cycle: bool, deadline_box: list[float], stop, out: dict[str, Any]
) -> None:
    conn = _Conn(addr)
    lat = array("d")
    statuses: Counter = Counter()
    reasons: Counter = Counter()
    errors = rejected = 0
    samples: list[str] = []
    i, n = 0, len(requests)
    deadline = deadline_box[0]
    perf = time.perf_counter
    while not stop.is_set():
        if i >= n:
            if not cycle:
                stop.set()  # out of single-use requests: end the window for everyone
                out["exhausted"] = True
                break
            i = 0
        req = requests[i]
        i += 1
        t0 = perf()
        if t0 >= deadline:
            break
        try:
            status, body = conn.exchange(req)
        except Exception as exc:  # noqa: BLE001 — every failure counts as an error
            errors += 1
            statuses["exc"] += 1
            if len(samples) < 5:
                samples.append(repr(exc))
            continue
        lat.append((perf() - t0) * 1000.0)
        statuses[str(status)] += 1
        if not 200 <= status < 300:
            errors += 1
            if len(samples) < 5:
                samples.append(f"{status} {body[:200]!r}")
        elif _REJECTED.search(body):
            rejected += 1
            m = _REASON.search(body)
            reasons[m.group(1).decode() if m else "?"] += 1
    conn.close()
    out.update(lat=lat, statuses=statuses, reasons=reasons, errors=errors, rejected=rejected, samples=samples)


def _process(addr, plan: Plan, indexes: list[int], start_at: float, seconds: float, stop, queue) -> None:
    outs = [dict() for _ in indexes]
    box = [start_at + seconds]  # wall deadline, converted below to this process's perf clock
    now_wall, now_perf = time.time(), time.perf_counter()
    box[0] = now_perf + (box[0] - now_wall)
    threads = [
        threading.Thread(target=_client, args=(addr, plan.per_client[k], plan.cycle, box, stop, o))
        for k, o in zip(indexes, outs)
    ]
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged: dict[str, Any] = {
        "lat": array("d"),
        "statuses": Counter(),
        "reasons": Counter(),
        "errors": 0,
        "rejected": 0,
        "samples": [],
        "exhausted": False,
        "ended": time.time(),
    }
    for o in outs:
        merged["lat"].extend(o.get("lat", array("d")))
        merged["statuses"].update(o.get("statuses", {}))
        merged["reasons"].update(o.get("reasons", {}))
        merged["errors"] += o.get("errors", 0)
        merged["rejected"] += o.get("rejected", 0)
        merged["samples"] += o.get("samples", [])
        merged["exhausted"] |= o.get("exhausted", False)
    merged["lat"] = merged["lat"].tobytes()
    queue.put(merged)


def run(host: str, port: int, plan: Plan, seconds: float, procs: int = 2) -> Result:
    """Run `plan` for `seconds` (or until a single-use plan runs out) and return the result."""
    ctx = mp.get_context("fork")  # the plan (possibly 100 MB of requests) is inherited, not pickled
    stop, queue = ctx.Event(), ctx.Queue()
    clients = len(plan.per_client)
    procs = max(1, min(procs, clients))
    start_at = time.time() + 0.5  # every process starts its clients at the same moment
    workers = [
        ctx.Process(
            target=_process,
            args=((host, port), plan, list(range(p, clients, procs)), start_at, seconds, stop, queue),
        )
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    parts = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    ended = max(p["ended"] for p in parts)
    lat = array("d")
    statuses: Counter = Counter()
    reasons: Counter = Counter()
    for p in parts:
        chunk = array("d")
        chunk.frombytes(p["lat"])
        lat.extend(chunk)
        statuses.update(p["statuses"])
        reasons.update(p["reasons"])
    exhausted = any(p["exhausted"] for p in parts)
    window = min(seconds, ended - start_at) if exhausted else seconds
    return Result(
        name=plan.name,
        clients=clients,
        seconds=window,
        requests=len(lat),
        errors=sum(p["errors"] for p in parts),
        rejected=sum(p["rejected"] for p in parts),
        statuses=dict(statuses),
        rejected_reasons=dict(reasons),
        error_samples=[s for p in parts for s in p["samples"]][:5],
        exhausted=exhausted,
        latencies_ms=list(lat),
    )
