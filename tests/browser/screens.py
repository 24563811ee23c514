"""`make screens`: screenshots of each page at a phone's width and at a desktop's, in Chinese (the
pages' default), into docs/screens/, with the browser the tests use (Debian's Chromium through
Playwright). The app runs on a fresh database of its own with the demo data (`flask ecard demo`).

    .venv/bin/python -m tests.browser.screens [--out docs/screens]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from tests.browser.conftest import CHROMIUM, browser_missing, make_app
from tests.browser.helpers import code_video

ROOT = Path(__file__).resolve().parents[2]
SIZES = {"phone": (390, 844), "desktop": (1366, 900)}


def demo(app) -> dict:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ecard", "demo"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def holder_code(api, holder: dict) -> str:
    """A universal code of the demo holder, from their phone (the API, as the app asks for it)."""
    card = {"person": {"id_number_clear": holder["id_number"], "name_clear": holder["name"]}}
    signed = api.sign({**card, "card_no": holder["card_no"], "pin": holder["pin"]}, channel="wechat")
    assert signed.status_code == 201, signed.json
    headers = {"Authorization": f"Bearer {signed.json['access_token']}"}
    return api.code({"headers": headers}, scene="any")["payload"]


def fill(page, fields: dict[str, str]) -> None:
    for label, text in fields.items():
        page.get_by_label(label, exact=True).first.fill(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        raise SystemExit(missing)
    from playwright.sync_api import sync_playwright

    from tests.api.client import Api
    from tests.api.live_server import serve

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the pictures' names, not every request
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ecard-screens-"))
    # codes that live a minute, as deployed: nothing refreshes while the pictures are taken
    app = make_app(tmp, ECARD_QR_TTL=60, ECARD_QR_REFRESH_BEFORE=10)
    creds = demo(app)
    holder, terminal, op = creds["holders"][0], creds["terminal"], creds["operator"]
    api = Api(app.test_client())
    try:
        with serve(app) as url, sync_playwright() as p:
            for size, (width, height) in SIZES.items():
                # a phone showing the first holder's code to the scanner's camera: a fresh code
                # for each size, so that each scanner's picture is of an accepted scan
                video = code_video(holder_code(api, holder), tmp / f"code-{size}.y4m", shown=200, away=1)
                browser = p.chromium.launch(
                    executable_path=CHROMIUM,
                    args=[
                        "--use-fake-device-for-media-stream",
                        "--use-fake-ui-for-media-stream",
                        f"--use-file-for-fake-video-capture={video}",
                    ],
                )
                context = browser.new_context(locale="zh-CN", viewport={"width": width, "height": height})
                context.grant_permissions(["camera"], origin=url)
                page = context.new_page()

                def shot(name: str) -> None:
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(args.out / f"{name}-{size}.png"), full_page=True)
                    print(args.out / f"{name}-{size}.png")

                page.goto(url + "/h5/")
                shot("h5-sign-in")
                fill(
                    page,
                    {
                        "身份证号码": holder["id_number"],
                        "姓名": holder["name"],
                        "社会保障卡卡号": holder["card_no"],
                        "密码": holder["pin"],
                    },
                )
                page.get_by_role("button", name="登录").click()
                page.wait_for_url("**/h5/card")
                shot("h5-card")
                page.goto(url + "/h5/code")
                page.get_by_role("img", name="二维码").wait_for()
                shot("h5-code")
                page.goto(url + "/h5/family")
                shot("h5-family")

                page.goto(url + "/scan/")
                shot("scan-sign-in")
                fill(page, {"终端编号": terminal["terminal_id"], "终端密钥": terminal["secret"]})
                page.get_by_role("button", name="登录").click()
                page.get_by_label("场景").select_option("clinic")
                page.get_by_role("button", name="切换场景").click()
                page.get_by_role("button", name="打开摄像头").click()
                page.get_by_role("status", name="核验结果").locator(".verdict:not(.waiting)").wait_for()
                page.wait_for_timeout(300)
                shot("scan-decision")

                page.goto(url + "/window/")
                shot("window-sign-in")
                fill(page, {"用户名": op["username"], "密码": op["password"]})
                page.get_by_role("button", name="登录").click()
                page.get_by_role("heading", name="查询人员").wait_for()
                shot("window-console")
                page.get_by_label("身份证号码").first.fill(creds["holders"][1]["id_number"])
                page.get_by_label("查询事由").select_option("card_service")
                page.get_by_role("button", name="查询", exact=True).click()
                page.get_by_role("heading", name=creds["holders"][1]["name"]).wait_for()
                shot("window-person")
                page.goto(url + "/window/overdue")  # the demo's cards are all issued: an empty list
                page.get_by_role("heading", name="逾期未制卡").wait_for()
                shot("window-overdue")
                browser.close()
    finally:
        app.extensions["ecard.db"].engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
