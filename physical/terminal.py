"""The terminal agent: reads a physical card in a PC/SC reader and has the server judge it.

    python -m physical.terminal --server URL --terminal-id ID --secret SECRET
                                [--reader NAME] [--pin PIN] [--timeout S]

1. `POST /api/v1/auth/terminal/token` {terminal_id, secret} -> {access_token}
2. wait for a card (up to --timeout seconds)
3. `POST /api/v1/verifications/chip/challenge` -> {challenge: 16 bytes hex, expires_at}
4. `physical.reader.read_card` with that challenge (and the PIN when given)
5. `POST /api/v1/verifications/chip` with `ChipRead.verification_request()` -> the decision
6. accepted with `external_auth` (E, hex): unlock EF06 and read the holder's name (printed masked)

Prints the decision as one JSON line (without E). Exit status 0 accepted, 1 rejected, 2 could not
read (no reader, pcscd down, no card in time, card removed, card refusal such as a wrong PIN,
server unreachable or refusing the terminal), with one line on stderr saying why.

HTTP uses only the standard library, so the agent's one extra dependency is pyscard.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from physical.apdu import CardStatusError
from physical.masking import mask_name
from physical.pcsc import PcscError, wait_for_card
from physical.reader import CardDataError, read_card, read_holder

HTTP_TIMEOUT = 10.0


class ServerError(Exception):
    """The server could not be reached, refused the request (4xx/5xx), or answered something
    that is not the expected JSON."""


def post_json(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """POST `body` as JSON (with a bearer token when given) and return the JSON object answered.

    Raises ServerError for a connection failure or timeout, an HTTP error status (with the
    problem document's `code` and `title` when there is one), or an answer that is not a JSON object.
    """
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # before URLError: it is one
        try:
            problem = json.loads(exc.read())
            detail = f"{problem.get('code')}: {problem.get('title')}"
        except (ValueError, AttributeError):
            detail = exc.reason
        raise ServerError(f"{url} answered {exc.code} ({detail})") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, timeout, garbage
        raise ServerError(f"server unreachable at {url}: {getattr(exc, 'reason', exc)}") from exc
    except ValueError as exc:
        raise ServerError(f"{url} did not answer JSON") from exc
    if not isinstance(answer, dict):
        raise ServerError(f"{url} did not answer a JSON object")
    return answer


def verify_card(
    server: str, token: str, reader: str | None, pin: str | None, timeout: float, scene: str | None = None
) -> dict[str, Any]:
    """Wait for a card, run the protocol with the server and return the decision to print (the
    server's decision without `external_auth`, plus `chip_holder` when EF06 was read).

    Raises PcscError, CardStatusError, CardDataError, ServerError.
    """
    with wait_for_card(reader, timeout) as conn:
        # The challenge lives 60 s: ask for it only once the card is there.
        challenge = post_json(f"{server}/api/v1/verifications/chip/challenge", {}, token)
        try:
            un = bytes.fromhex(challenge["challenge"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerError("the challenge answer has no hex `challenge`") from exc
        if len(un) != 16:
            raise ServerError("the challenge is not 16 bytes")
        chip = read_card(conn, un, pin)
        # A merchant of several scenes names the one it reads for; the server judges it against them.
        body = chip.verification_request() | ({"scene": scene} if scene else {})
        decision = post_json(f"{server}/api/v1/verifications/chip", body, token)
        if not isinstance(decision.get("accepted"), bool):
            raise ServerError("the decision has no boolean `accepted`")
        result = {k: v for k, v in decision.items() if k != "external_auth"}
        if decision["accepted"] and decision.get("external_auth"):
            try:
                holder = read_holder(conn, bytes.fromhex(decision["external_auth"]))
                result["chip_holder"] = {"name": mask_name(holder.name)}
            except (PcscError, CardStatusError, CardDataError, ValueError, TypeError) as exc:
                # The server has judged and recorded the read: it stays accepted, without the name.
                print(f"terminal: accepted, but the holder data could not be read: {exc}", file=sys.stderr)
                result["chip_holder"] = None
        return result


def main(argv: list[str] | None = None) -> int:
    """Run the agent once; return the exit status (0 accepted, 1 rejected, 2 could not read)."""
    parser = argparse.ArgumentParser(
        prog="python -m physical.terminal", description="Verify a physical social security card."
    )
    parser.add_argument("--server", required=True, help="base URL of the server, e.g. https://ecard.example")
    parser.add_argument("--terminal-id", required=True)
    # The secret is better given in the environment: a command line is visible to every user.
    parser.add_argument(
        "--secret",
        default=os.environ.get("ECARD_TERMINAL_SECRET"),
        help="terminal secret (default: $ECARD_TERMINAL_SECRET)",
    )
    parser.add_argument("--reader", help="use the readers whose name contains this (default: any reader)")
    parser.add_argument("--pin", help="the holder's 6-digit PIN, when the scene needs it")
    parser.add_argument(
        "--scene",
        choices=("clinic", "transit", "scenic"),
        help="the scene this reader serves, when its merchant has several",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a card (default 30)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("give --secret or set ECARD_TERMINAL_SECRET")
    if args.pin is not None and not (len(args.pin) == 6 and args.pin.isascii() and args.pin.isdigit()):
        parser.error("--pin must be 6 digits")  # exits with status 2
    server = args.server.rstrip("/")

    try:
        token_answer = post_json(
            f"{server}/api/v1/auth/terminal/token", {"terminal_id": args.terminal_id, "secret": args.secret}
        )
        token = token_answer.get("access_token")
        if not isinstance(token, str):
            raise ServerError("the token answer has no `access_token`")
        result = verify_card(server, token, args.reader, args.pin, args.timeout, args.scene)
    except (PcscError, CardStatusError, CardDataError, ServerError) as exc:
        print(f"terminal: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0 if result["accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
