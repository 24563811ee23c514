"""A gate's memory of the codes it accepted, so that one gate never accepts one code twice.

`verify` says a code is genuine and alive; it cannot say whether this gate already let it through
(a photographed code, or one shown twice at a turnstile). The server makes codes single use across
gates; offline, a gate can only remember its own acceptances, for as long as a code can pass:

    memory = GateMemory()                                  # one per gate process
    code = verify(text, trust_list, now, scene=Scene.TRANSIT)
    if not memory.accept(code, now):
        ...                                                # the same code again: refuse it

An issuer's code (`EC1:`) is remembered by its nonce until `issued_at + lifetime + leeway`, a
device code (`ED1:`) by its serial and signing time until `signed_at + device_skew`: the last
moments `verify` still takes them. Never by the text: ECDSA and SM2 signatures are malleable, so
one code has several texts. Memory stays bounded because every entry is dropped once its code
can no longer pass: at most the codes accepted in one code's longest life (310 s for `EC1:`,
twice the skew for `ED1:`).
"""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from ._time import require_aware
from .credential import DEFAULT_DEVICE_SKEW, DeviceCode
from .format import Code
from .verify import DEFAULT_LEEWAY


class GateMemory:
    """The codes one gate accepted, each until it can no longer pass `verify`. In-process and not
    thread-safe: one per gate process (a gate reads one code at a time); not shared between gates.
    Give it the same `leeway` and `device_skew` as `verify`, or a replay could outlive its entry."""

    def __init__(self, *, leeway: timedelta = DEFAULT_LEEWAY, device_skew: timedelta = DEFAULT_DEVICE_SKEW):
        self._leeway = leeway.total_seconds()
        self._skew = device_skew.total_seconds()
        self._until: dict[bytes, float] = {}  # code identity -> the end of its life (Unix seconds)
        self._queue: list[tuple[float, bytes]] = []  # the same, soonest end first

    def accept(self, code: Code | DeviceCode, now: datetime) -> bool:
        """Record that the gate accepts `code` (as `verify` returned it) at `now`.

        Returns True the first time, False when this memory already accepted the same code (the
        same nonce, or the same serial and signing time) and it has not ended: refuse it then.
        Forgets the codes that ended by `now` first. Raises `ValueError` for a naive `now`,
        `TypeError` for anything but a `Code` or a `DeviceCode`.
        """
        at = require_aware(now).timestamp()
        while self._queue and self._queue[0][0] <= at:
            _, identity = heapq.heappop(self._queue)
            del self._until[identity]
        if isinstance(code, DeviceCode):
            identity = b"D" + code.use_id
            until = code.signed_at.timestamp() + self._skew
        elif isinstance(code, Code):
            identity = b"C" + code.nonce
            until = code.expires_at.timestamp() + self._leeway
        else:
            raise TypeError(f"a gate remembers codes, not {type(code).__name__}")
        if identity in self._until:
            return False
        self._until[identity] = until
        heapq.heappush(self._queue, (until, identity))
        return True

    def __len__(self) -> int:
        """The number of codes remembered (some may have ended since the last `accept`)."""
        return len(self._until)
