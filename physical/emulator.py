"""The virtual card on the wire: runs a `VirtualCard` from an image file against the vpcd driver.

    python -m physical.emulator IMAGE [--host 127.0.0.1] [--port 35963] [--remove-after N] [--t0]

vpcd (Debian `vsmartcard-vpcd`, configured in /etc/reader.conf.d/vpcd as `/dev/null:0x8C7B`)
listens inside pcscd on TCP port 35963 of every interface, and its reader `Virtual PCD 00 00`
sees a card while a client is connected. Every message is a 2-byte big-endian length and a
payload: a 1-byte payload is control (00 power off, 01 power on, 02 reset, 04 get ATR, answered
with the ATR), anything longer is an APDU, answered with data ‖ SW. Closing the socket removes the
card.

Prints "card inserted" once connected (tests wait for that line), and the reason when it stops.
The image file is rewritten (atomically) after every ATC or tries change, like a chip's EEPROM.
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import time

from physical.card import VirtualCard
from physical.image import load_image, save_image

DEFAULT_PORT = 35963  # 0x8C7B, vpcd's channel in /etc/reader.conf.d/vpcd

# T=0 (TB1 and TC1 present, no TD1), 12 historical bytes. Contact social security cards are T=0.
ATR = bytes.fromhex("3B6C0000") + b"CN-SSSE-CARD"

CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04


def connect(host: str, port: int, wait: float) -> socket.socket:
    """Return a socket connected to the vpcd driver, retrying while pcscd is not up yet.

    Raises OSError (the last connection error) when `wait` seconds pass without a connection.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=5)
            sock.settimeout(None)
            return sock
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """Return exactly n bytes, or None when the driver closed the connection first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(2, "big") + payload)


def serve(sock: socket.socket, card: VirtualCard, remove_after: float | None = None) -> str:
    """Answer the driver until it closes the connection or `remove_after` seconds pass.

    Returns why it stopped: "card removed" (time is up; the caller closes the socket) or
    "reader closed the connection". Raises OSError on a broken connection.
    """
    deadline = None if remove_after is None else time.monotonic() + remove_after
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            # Only wait between messages, so the card never leaves in the middle of an answer.
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                return "card removed"
        header = _recv_exact(sock, 2)
        payload = None if header is None else _recv_exact(sock, int.from_bytes(header, "big"))
        if payload is None:
            return "reader closed the connection"
        if len(payload) == 1:
            if payload[0] == CTRL_GET_ATR:
                _send(sock, ATR)
            elif payload[0] in (CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET):
                card.reset()
            # Unknown control bytes get no answer: vpcd expects none for any control but 04.
        else:
            _send(sock, card.process(payload))


def main(argv: list[str] | None = None) -> int:
    """Run the emulator; return the exit status (0 after the card left, 2 when the driver could not
    be reached or the image could not be read)."""
    parser = argparse.ArgumentParser(
        prog="python -m physical.emulator", description="Virtual social security card for the vpcd reader."
    )
    parser.add_argument("image", help="card image JSON (written by personalize); updated in place")
    parser.add_argument("--host", default="127.0.0.1", help="where pcscd with vpcd runs (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"vpcd port (default {DEFAULT_PORT})")
    parser.add_argument("--remove-after", type=float, metavar="N", help="pull the card out after N seconds")
    parser.add_argument("--t0", action="store_true", help="answer like a T=0 card: 61xx, then GET RESPONSE")
    parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="S",
        help="wait up to S seconds for the driver (default 30)",
    )
    args = parser.parse_args(argv)

    try:
        image = load_image(args.image)
        card = VirtualCard(image, save=lambda img: save_image(args.image, img), t0=args.t0)
    except (OSError, ValueError, KeyError) as exc:
        print(f"emulator: cannot load the card image {args.image}: {exc}", file=sys.stderr)
        return 2
    try:
        sock = connect(args.host, args.port, args.wait)
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        print(f"emulator: no vpcd driver at {where} (is pcscd running?): {exc}", file=sys.stderr)
        return 2
    print("card inserted", flush=True)
    try:
        with sock:
            reason = serve(sock, card, args.remove_after)
    except KeyboardInterrupt:
        reason = "stopped"
    except OSError as exc:  # the connection broke, or the image could not be written
        reason = f"stopped: {exc}"
    print(reason, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
