"""What the browser tests repeat: signing in on each page, reading the code on the screen
(zxing-cpp), and a video of a code for Chromium's fake camera."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image


def sign_in_holder(page: Any, url: str, card: dict) -> None:
    """Sign in on /h5/ as the holder of `card` (as `Api.issued_card` made it)."""
    person = card["person"]
    page.goto(url + "/h5/")
    page.get_by_label("ID number").fill(person["id_number_clear"])
    page.get_by_label("Name").fill(person["name_clear"])
    page.get_by_label("Card number").fill(card["card_no"])
    page.get_by_label("PIN").fill(card["pin"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/h5/card")


def sign_in_terminal(page: Any, url: str, terminal: dict) -> None:
    page.goto(url + "/scan/")
    page.get_by_label("Terminal ID").fill(terminal["terminal_id"])
    page.get_by_label("Secret").fill(terminal["secret"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/scan/scanner")


def sign_in_operator(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url + "/window/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Find a person").wait_for()


def read_code(png: bytes) -> str:
    """The text of the one QR code in a screenshot. Raises AssertionError when there is none."""
    import zxingcpp

    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, f"{len(found)} codes in the screenshot"
    return found[0].text


def code_video(payload: str, path: Path, *, fps: int = 10, shown: int = 10, away: int = 15) -> Path:
    """A Y4M video for Chromium's fake camera (`--use-file-for-fake-video-capture`), which plays
    it in a loop: the code for `shown` frames, then `away` blank frames (the phone taken away),
    so that a scanner sees the same code arrive twice."""
    import qr

    width, height = 640, 480
    code = Image.open(io.BytesIO(qr.render_png(payload))).convert("L")
    side = min(width, height) - 40
    code = code.resize((side, side), Image.NEAREST)
    frame = Image.new("L", (width, height), 255)
    frame.paste(code, ((width - side) // 2, (height - side) // 2))
    blank = Image.new("L", (width, height), 255)

    def yuv(image: Image.Image) -> bytes:
        y = image.tobytes()
        chroma = bytes([128]) * (width // 2 * height // 2)  # grey: no colour
        return y + chroma + chroma

    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for image in [frame] * shown + [blank] * away:
            out.write(b"FRAME\n" + yuv(image))
    return path
