"""The PC/SC adapter: a `Connection` over pyscard, and waiting for a card in a reader.

pyscard is imported inside the functions, so importing this module (e.g. for its exception
classes) works without it. pyscard's own exceptions are translated into ours, because they say
little and overlap (from the pyscard source and trying it):

- pcscd not running: `readers()` raises `EstablishContextException` (or, on some versions,
  `CardServiceNotFoundException` / `CardServiceStoppedException`) -> `PcscUnavailableError`.
- a card pulled out during a session: `transmit` raises `CardConnectionException`, not
  `NoCardException` -> `CardRemovedError`.
- pyscard's `transmit` does not follow 61xx: `physical.reader.exchange` does.
"""

from __future__ import annotations

import time
from typing import Any


class PcscError(Exception):
    """Base of the PC/SC failures: the card could not be read (the terminal exits with status 2)."""


class PcscUnavailableError(PcscError):
    """pcscd is not running (or pyscard is not installed)."""


class NoReaderError(PcscError):
    """No reader is connected, or none matches the requested name."""


class NoCardError(PcscError):
    """No card was presented within the time allowed (or it could not be powered)."""


class CardRemovedError(PcscError):
    """The card left the reader (or stopped answering) in the middle of a session."""


def _establish_errors() -> tuple[type[BaseException], ...]:
    """pyscard's exceptions that mean "pcscd is not there"."""
    from smartcard.Exceptions import CardServiceNotFoundException, CardServiceStoppedException
    from smartcard.pcsc.PCSCExceptions import EstablishContextException

    return (EstablishContextException, CardServiceNotFoundException, CardServiceStoppedException)


def reader_names() -> list[str]:
    """Return the names of the PC/SC readers (an empty list when none is connected).

    Raises PcscUnavailableError when pyscard is missing or pcscd does not answer.
    """
    try:
        from smartcard.System import readers
    except ImportError as exc:
        raise PcscUnavailableError("pyscard is not installed (pip install pyscard)") from exc
    try:
        return [str(r) for r in readers()]
    except _establish_errors() as exc:
        raise PcscUnavailableError(f"pcscd is not running or not reachable: {exc}") from exc


class PcscConnection:
    """A `physical.reader.Connection` to a card through pyscard. Use as a context manager, or
    call `close()`, to release the card."""

    def __init__(self, card_connection: Any, reader_name: str) -> None:
        self._conn = card_connection  # a connected pyscard CardConnection
        self.reader_name = reader_name

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one command APDU; return (data, status word) as the card answered (61xx not followed).

        Raises CardRemovedError when the card left or stopped answering.
        """
        from smartcard.Exceptions import SmartcardException

        try:
            data, sw1, sw2 = self._conn.transmit(list(apdu))
        except SmartcardException as exc:  # CardConnectionException and NoCardException
            raise CardRemovedError(f"the card left the reader {self.reader_name!r}: {exc}") from exc
        return bytes(data), (sw1 << 8) | sw2

    def atr(self) -> bytes:
        """Return the card's ATR. Raises CardRemovedError when the card is gone."""
        from smartcard.Exceptions import SmartcardException

        try:
            return bytes(self._conn.getATR())
        except SmartcardException as exc:
            raise CardRemovedError(str(exc)) from exc

    def close(self) -> None:
        """Release the card (powering it off); never raises, the card may already be gone."""
        for step in (self._conn.disconnect, self._conn.release):
            try:
                step()
            except Exception:  # noqa: BLE001 - a card already gone cannot be released any better
                pass

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _try_connect(name: str) -> Any | None:
    """Return a connected pyscard connection to the card in reader `name`, or None if no card
    can be powered there now."""
    from smartcard.Exceptions import SmartcardException
    from smartcard.pcsc.PCSCReader import PCSCReader

    conn = PCSCReader(name).createConnection()
    try:
        conn.connect()
        return conn
    except SmartcardException:  # no card, a card still powering up, or one just pulled out
        try:
            conn.release()
        except SmartcardException:
            pass
        return None


def wait_for_card(reader_name: str | None = None, timeout: float = 30.0) -> PcscConnection:
    """Wait until a card is in a reader and connect to it.

    `reader_name` picks the readers whose name contains it (e.g. "Virtual PCD 00 00" or "ACR39");
    None means any reader. Returns a connected PcscConnection.

    Raises PcscUnavailableError (pcscd down or pyscard missing), NoReaderError (no matching reader
    when the time is up), NoCardError (readers, but no card within `timeout` seconds).
    """
    deadline = time.monotonic() + timeout
    while True:
        names = [n for n in reader_names() if reader_name is None or reader_name in n]
        for name in names:
            conn = _try_connect(name)
            if conn is not None:
                return PcscConnection(conn, name)
        if time.monotonic() >= deadline:
            if not names:
                wanted = f" named like {reader_name!r}" if reader_name else ""
                raise NoReaderError(f"no card reader{wanted} is connected")
            raise NoCardError(f"no card presented within {timeout:g} s in {', '.join(names)}")
        time.sleep(0.2)
