#!/usr/bin/env python3
"""Runs the README as a user would: its first set-up command in the
background, then its walkthrough and docs/dialects.md's example verbatim.

What a user types is what runs. The commands are taken from the documents
and handed to bash unchanged; only the environment differs from a user's
shell: CARDCORE_DATABASE_URL points at a fresh SQLite file in a temporary
directory (so a second run does not meet the first run's tenants), and
CARDCORE_MASTER_KEY is unset. The server listens where the README says
(127.0.0.1:8080); if that port is taken, the check says so and fails.

Every `sh` block of README.md and docs/*.md is either run here or marked
`<!-- illustrative: why -->` on the line before it; an unmarked block fails
the check, so a new runnable block cannot slip in untested.

Run by scripts/test.sh (the README's test command) and so by .ci/run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
ADDRESS = ("127.0.0.1", 8080)
# The first `cargo run --release` compiles the whole server.
START_TIMEOUT_S = 45 * 60
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


SERVER_LOG: list[Path] = []


def fail(message: str) -> None:
    for path in SERVER_LOG:
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-30:]
            print("check-docs: the server's last lines:\n    " + "\n    ".join(tail), file=sys.stderr)
    print(f"check-docs: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def region(text: str, name: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        fail(f"markers {start} / {end} not found")
    return text[text.index(start) : text.index(end)]


def sh_blocks(text: str) -> list[str]:
    return [m.group(1) for m in BLOCK.finditer(text)]


def unmarked_blocks(path: Path, run_regions: list[str]) -> list[str]:
    """Blocks that are neither inside a region this check runs nor marked
    illustrative on the line before them."""
    text = path.read_text()
    spans = [(text.index(r), text.index(r) + len(r)) for r in run_regions]
    found = []
    for m in BLOCK.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if not before.startswith("<!-- illustrative:"):
            line = text[: m.start()].count("\n") + 1
            found.append(f"{path.relative_to(ROOT)}:{line}")
    return found


def port_taken() -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(ADDRESS) == 0


def wait_healthy(server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    url = f"http://{ADDRESS[0]}:{ADDRESS[1]}/healthz"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"the server exited with {server.returncode} before /healthz answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as res:
                if res.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    fail(f"/healthz did not answer within {START_TIMEOUT_S} s")


def run_script(name: str, script: str, env: dict[str, str]) -> list[str]:
    print(f"check-docs: running {name} verbatim", flush=True)
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sys.stdout.write(out.stdout)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        fail(f"{name} exited with {out.returncode}")
    return out.stdout.splitlines()


def expect(name: str, lines: list[str], wanted: list[dict]) -> None:
    """Each wanted object must equal (as JSON) the line at the same place
    among the script's JSON lines; lines that are not JSON are ignored."""
    objects = []
    for line in lines:
        try:
            objects.append(json.loads(line))
        except ValueError:
            continue
    for i, want in enumerate(wanted):
        if i >= len(objects):
            fail(f"{name}: printed {len(objects)} JSON lines, expected at least {len(wanted)}")
        got = objects[i]
        sub = {k: got.get(k) for k in want} if isinstance(got, dict) else got
        if sub != want:
            fail(f"{name}: JSON line {i + 1} is {got}, expected {want}")


def main() -> None:
    readme = README.read_text()
    setup = region(readme, "setup")
    walkthrough = region(readme, "walkthrough")
    dialects_doc = ROOT / "docs" / "dialects.md"
    dialects = region(dialects_doc.read_text(), "dialects")

    unmarked = unmarked_blocks(README, [setup, walkthrough])
    for doc in DOCS:
        regions = [dialects] if doc == dialects_doc else []
        unmarked += unmarked_blocks(doc, regions)
    if unmarked:
        fail("sh blocks neither run by this check nor marked <!-- illustrative: ... -->: " + ", ".join(unmarked))

    commands = [line for line in sh_blocks(setup)[0].splitlines() if line.strip()]
    if len(commands) != 2:
        fail(f"the README's set-up block has {len(commands)} commands, expected 2")
    serve, test = commands
    test_command = test.split("#", 1)[0].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    if test_command not in [line.strip() for line in ci]:
        fail(f".ci/run does not run the README's test command `{test_command}`")

    if port_taken():
        fail(f"{ADDRESS[0]}:{ADDRESS[1]} is in use: the README's server listens there; stop what holds it")

    data = tempfile.mkdtemp(prefix="cardcore-docs-")
    env = dict(os.environ)
    env.pop("CARDCORE_MASTER_KEY", None)
    env["CARDCORE_DATABASE_URL"] = f"sqlite://{data}/cardcore.db"
    print(f"check-docs: starting `{serve.split('#', 1)[0].strip()}` (data in {data})", flush=True)
    log_path = Path(data) / "server.log"
    log = open(log_path, "w")
    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    SERVER_LOG.append(log_path)
    made = [ROOT / "pek.json", ROOT / "pek.pem"]
    try:
        wait_healthy(server)
        lines = run_script("README walkthrough", "\n".join(sh_blocks(walkthrough)), env)
        expect(
            "README walkthrough",
            lines,
            [
                {"status": "LOCKED", "changed": True},
                {"status": "LOCKED", "changed": False},
                {"status": "ACTIVE", "changed": True},
                {"status": "BLOCKED"},
                {"status": 409, "code": "invalid_status_transition"},
            ],
        )
        objects = [json.loads(x) for x in lines if x.startswith("{")]
        pin_lines = [o for o in objects if "pin_status" in o or "valid" in o]
        wanted = [
            {"pin_status": "SET"},
            {"valid": True},
            {"valid": False},
            {"pin_status": "SET"},
            {"valid": True},
            {"pin_status": "SET"},
            {"pin_status": "SET"},
            {"valid": True},
        ]
        got = [{k: p.get(k) for k in w} for p, w in zip(pin_lines, wanted)]
        if len(pin_lines) != len(wanted) or got != wanted:
            fail(f"README walkthrough: PIN lines {pin_lines}, expected {wanted}")
        run_script("docs/dialects.md example", "\n".join(sh_blocks(dialects)), env)
    finally:
        # SIGTERM, as an operator stops it; `cargo run` execs the server.
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                fail("the server did not stop within 30 s of SIGTERM")
        for path in made:
            path.unlink(missing_ok=True)
    if server.returncode != 0:
        fail(f"the server exited with {server.returncode} after SIGTERM")
    log.close()
    subprocess.run(["rm", "-rf", data], check=False)
    print("check-docs: README set-up, walkthrough and docs examples ran as written")


if __name__ == "__main__":
    main()
