#!/usr/bin/env python3
"""The console and the PIN widget in a real browser: Debian's Chromium,
headless, driven by Playwright's Python package (the system Chromium, no
browser download).

  1. Sign in with the key from `cardcore tenant create` (by keyboard), find a
     card by `last four + expiry`, lock it (with the confirmation step), and
     see the audit row with actor `console`.
  2. Set a PIN through the widget, embedded in an iframe of a page served on
     another origin (http://localhost:<port>, cardcore on 127.0.0.1); the page
     hears only {type, ok, pin_status}; the API then verifies the PIN.
  3. A page of a wrong origin: the browser refuses to frame the widget
     (frame-ancestors) and its POST to /widget/pin is refused (403, no CORS).
  4. axe-core (vendored from npm, tests/browser/vendor) on the sign-in page,
     the search results, the card page at desktop and phone width, and the
     widget: any serious or critical violation fails.
  5. Screenshots of the card page and the widget: into a temporary folder,
     or, with UPDATE_SCREENSHOTS=1, into docs/screenshots/ for the README
     (so a test run leaves the checkout as it was).

Run by scripts/test.sh. Needs /usr/bin/chromium and `pip install playwright`;
without them it skips, except under CI=true, where it fails.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="cardcore-shots-"))
)
CHROMIUM = os.environ.get("CARDCORE_CHROMIUM", "/usr/bin/chromium")


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        print(f"browser test: FAILED: {message}", file=sys.stderr)
        sys.exit(1)
    print(f"browser test: skipped: {message}", file=sys.stderr)
    sys.exit(0)


try:
    from playwright.sync_api import sync_playwright, expect
except ImportError:
    skip_or_fail("the Python package playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def serve_page(host: str, port: int, html: str) -> http.server.ThreadingHTTPServer:
    """A tenant's page on another origin."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def tenant_page(widget_url: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Acme Bank – choose your PIN</title>
<style>body{{font-family:system-ui,sans-serif;background:#f3f0ea;margin:0;padding:2rem}}
.card{{max-width:380px;margin:auto;background:#fff;border-radius:14px;padding:1.2rem;box-shadow:0 2px 10px #0002}}
h1{{font-size:1.2rem}} iframe{{border:0;width:100%;height:390px}}</style></head>
<body><main class="card"><h1>Acme Bank · Your new card</h1>
<iframe id="w" title="PIN entry" src="{widget_url}"></iframe></main>
<script>window.messages=[];addEventListener("message",e=>window.messages.push({{origin:e.origin,data:e.data}}));</script>
</body></html>"""


def axe(page, what: str) -> None:
    # Evaluated through the DevTools protocol: the console's CSP allows no
    # inline script, and the test must not weaken it.
    page.evaluate(AXE + "\n;undefined")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    for v in result["violations"]:
        print(f"  axe {what}: {v['impact']}: {v['id']}: {v['help']} ({len(v['nodes'])} nodes)")
    assert not bad, f"axe: serious violations on {what}: {[v['id'] for v in bad]}"


def main() -> None:
    subprocess.run(["cargo", "build", "-q", "-p", "cardcore"], cwd=ROOT, check=True)
    binary = ROOT / "target" / "debug" / "cardcore"
    work = Path(tempfile.mkdtemp(prefix="cardcore-browser-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.pop("CARDCORE_MASTER_KEY", None)
    env["CARDCORE_DATABASE_URL"] = f"sqlite://{work}/cardcore.db"
    log = open(work / "server.log", "w")
    server = subprocess.Popen(
        [str(binary), "serve", "--listen", f"127.0.0.1:{port}"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    pages = []
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise SystemExit("cardcore did not start: " + (work / "server.log").read_text())
        tenant = json.loads(
            subprocess.run(
                [str(binary), "tenant", "create", "--name", "acme", "--json"],
                env=env, check=True, capture_output=True, text=True,
            ).stdout
        )
        key = tenant["api_key"]
        _, holder = call(base, "POST", "/v1/cardholders", key, {
            "external_id": "user-1", "name": "Ana Silva",
            "phone": {"country_code": "351", "number": "912345678"},
        })
        _, card = call(base, "POST", "/v1/cards", key, {"cardholder_id": holder["id"], "type": "virtual"})
        for _ in range(3):
            call(base, "POST", f"/v1/cards/{card['id']}/lock", key)
            call(base, "POST", f"/v1/cards/{card['id']}/unlock", key)
        card_id = card["id"]

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            ctx = browser.new_context(viewport={"width": 1200, "height": 900})
            page = ctx.new_page()
            page.set_default_timeout(10_000)

            # 1. Sign in (keyboard only), search, lock, the audit row.
            page.goto(base + "/")
            expect(page).to_have_url(base + "/console/login")
            axe(page, "sign-in page")
            page.keyboard.press("Tab")  # the skip link
            page.keyboard.press("Tab")  # the logo
            page.keyboard.press("Tab")  # the key field
            assert page.evaluate("document.activeElement.id") == "api_key", "the key field is reachable by Tab"
            page.keyboard.type(key)
            page.keyboard.press("Enter")
            expect(page).to_have_url(base + "/console")
            cookies = {c["name"]: c for c in ctx.cookies()}
            session = cookies["cardcore_console"]
            assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console"
            assert page.evaluate("document.cookie") == "", "the session cookie is not readable by script"

            page.get_by_label("Search cards").fill(f"{card['last_four']} {card['expiry']}")
            page.get_by_label("Search cards").press("Enter")
            link = page.get_by_role("link", name=f"•••• {card['last_four']}")
            expect(link).to_be_visible()
            axe(page, "search results")
            link.click()
            expect(page).to_have_url(f"{base}/console/cards/{card_id}")
            expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
            axe(page, "card page")

            page.get_by_role("button", name="Lock", exact=True).click()
            expect(page.get_by_role("heading", name="Lock this card?")).to_be_visible()
            page.get_by_role("button", name="Yes, lock").click()
            expect(page.get_by_role("status")).to_have_text("Card locked.")
            first_row = page.locator("#h-audit ~ .scroll tbody tr").first
            expect(first_row).to_contain_text("card.lock")
            expect(first_row).to_contain_text("console")
            _, api_card = call(base, "GET", f"/v1/cards/{card_id}", key)
            assert api_card["status"] == "LOCKED", api_card
            _, audit = call(base, "GET", f"/v1/cards/{card_id}/events", key)
            assert audit["data"][0]["type"] == "card.lock" and audit["data"][0]["actor"]["type"] == "console"
            call(base, "POST", f"/v1/cards/{card_id}/unlock", key)
            SHOTS.mkdir(parents=True, exist_ok=True)

            # The same page at phone width: readable, no sideways scrolling of the page.
            phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
            phone.add_cookies([{k: session[k] for k in ("name", "value", "domain", "path", "httpOnly", "sameSite")}])
            mobile = phone.new_page()
            mobile.goto(f"{base}/console/cards/{card_id}")
            expect(mobile.get_by_role("heading", name="Audit trail")).to_be_visible()
            wide = mobile.evaluate("document.documentElement.scrollWidth")
            assert wide <= 390, f"the card page is {wide}px wide at 390px"
            axe(mobile, "card page at phone width")
            mobile.screenshot(path=str(SHOTS / "console-card-phone.png"), full_page=False)
            phone.close()

            # 2. The widget on another origin sets a PIN the API verifies.
            tenant_port = free_port()
            origin = f"http://localhost:{tenant_port}"
            status, made = call(base, "POST", f"/v1/cards/{card_id}/pin-sessions", key,
                                {"purpose": "set", "allowed_origin": origin})
            assert status == 201, made
            widget_url = f"{base}/widget/pin?session={made['session_token']}"
            pages.append(serve_page("127.0.0.1", tenant_port, tenant_page(widget_url)))
            shop = ctx.new_page()
            shop.goto(origin + "/")
            frame = shop.frame_locator("#w")
            expect(frame.get_by_label("New PIN", exact=True)).to_be_visible()
            shop.locator("#w").screenshot(path=str(SHOTS / "widget.png"))
            widget_frame = next(f for f in shop.frames if f.url.startswith(base + "/widget/pin"))
            axe(widget_frame, "widget")
            frame.get_by_label("New PIN", exact=True).fill("4821")
            frame.get_by_label("Repeat the new PIN").fill("4821")
            frame.get_by_role("button", name="Set PIN").click()
            expect(frame.get_by_role("status")).to_have_text("Your PIN is set.")
            shop.wait_for_function("window.messages.length > 0")
            messages = shop.evaluate("window.messages")
            assert messages == [{"origin": base, "data": {"type": "cardcore.pin", "ok": True, "pin_status": "SET"}}], messages
            assert "4821" not in json.dumps(messages)
            status, verified = call(base, "POST", f"/v1/cards/{card_id}/pin/verify", key, {"pin": "4821"})
            assert status == 200 and verified["valid"] is True, verified
            _, audit = call(base, "GET", f"/v1/cards/{card_id}/events", key)
            assert audit["data"][0]["type"] == "card.pin_set" and audit["data"][0]["actor"]["channel"] == "widget"

            # The card page as the README shows it: PIN set through the widget.
            page.goto(f"{base}/console/cards/{card_id}")
            expect(page.get_by_text("3 of 3")).to_be_visible()
            page.screenshot(path=str(SHOTS / "console-card.png"), full_page=True)

            # 3. A page of a wrong origin: not framed, and its POST is refused.
            status, made = call(base, "POST", f"/v1/cards/{card_id}/pin-sessions", key,
                                {"purpose": "verify", "allowed_origin": origin})
            wrong_port = free_port()
            wrong_origin = f"http://localhost:{wrong_port}"
            widget_url = f"{base}/widget/pin?session={made['session_token']}"
            pages.append(serve_page("127.0.0.1", wrong_port, tenant_page(widget_url)))
            evil = ctx.new_page()
            blocked = []
            evil.on("console", lambda m: blocked.append(m.text) if "frame-ancestors" in m.text else None)
            evil.goto(wrong_origin + "/")
            evil.wait_for_timeout(1000)
            framed = [f for f in evil.frames if f != evil.main_frame]
            assert all(f.locator("#pin-form").count() == 0 for f in framed), "the widget rendered on a wrong origin"
            assert blocked, "Chromium reports the frame-ancestors refusal"
            outcome = evil.evaluate(
                """async ([url, token]) => {
                    try {
                        const r = await fetch(url, {method: 'POST', headers: {'content-type': 'application/json'},
                            body: JSON.stringify({session_token: token, encrypted_pin: 'AAAA'})});
                        return 'read ' + r.status;
                    } catch (e) { return 'blocked'; }
                }""",
                [base + "/widget/pin", made["session_token"]],
            )
            assert outcome == "blocked", outcome
            req = urllib.request.Request(
                base + "/widget/pin", method="POST",
                data=json.dumps({"session_token": made["session_token"], "encrypted_pin": "AAAA"}).encode(),
                headers={"Content-Type": "application/json", "Origin": wrong_origin},
            )
            try:
                urllib.request.urlopen(req, timeout=5)
                raise AssertionError("a wrong origin was answered")
            except urllib.error.HTTPError as e:
                assert e.code == 403 and json.loads(e.read())["code"] == "origin_not_allowed"
            browser.close()
        print("browser test: ok (console sign-in, search, lock, audit; widget on another origin; wrong origin refused; axe)")
    finally:
        for s in pages:
            s.shutdown()
        server.terminate()
        server.wait(timeout=20)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
