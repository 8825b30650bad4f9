"""The demo page in headless Chromium (Debian's ``chromium`` driven by playwright-core): two pages,
a message sent in one appears in the other; the admin view lists nodes and groups and pushes.

``UPDATE_DEMO_SCREENSHOT=1`` writes the screenshot to ``docs/demo.png`` (shown in the README).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import start_gru

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "browser" / "demo_check.js"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
KEY = "demo-admin-key-0123456789ab"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                                reason="chromium not installed: run scripts/setup.sh dev")


@pytest.fixture(scope="module")
def demo_gru():
    server = start_gru({"GRU_API_KEYS": f"admin:{KEY}", "GRU_NODE_NAME": "node_1"})
    yield server
    server.stop()


def test_two_browser_pages_talk_through_the_demo_page(demo_gru, tmp_path):
    screenshot = tmp_path / "demo.png"
    result = subprocess.run([shutil.which("node") or "node", str(SCRIPT), demo_gru.url, KEY, str(screenshot)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    steps = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, result.stdout + result.stderr + demo_gru.log_tail()
    names = [s["step"] for s in steps]
    assert names == ["logged in", "logged in", "online list updated", "broadcast arrived", "unicast arrived",
                     "admin view", "system push arrived", "screenshot", "online list shrank", "ok"]
    assert "TEACHER Ms Li" in steps[0]["status"]
    assert sorted(steps[2]["online"]) == ["s-tom", "t-li (you)"]
    assert any("node_1" in row and "up" in row for row in steps[5]["nodes"])
    assert screenshot.read_bytes().startswith(PNG_MAGIC)
    if os.environ.get("UPDATE_DEMO_SCREENSHOT"):
        shutil.copyfile(screenshot, ROOT / "docs" / "demo.png")


def test_the_page_and_the_npm_client_are_served(demo_gru):
    page = requests.get(f"{demo_gru.url}/demo", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert '<script src="/demo/socket.io.min.js">' in page.text
    client = requests.get(f"{demo_gru.url}/demo/socket.io.min.js", timeout=5)
    installed = ROOT / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
    assert client.status_code == 200 and client.content == installed.read_bytes()
    assert requests.get(f"{demo_gru.url}/demo/static/demo.js", timeout=5).status_code == 200


def test_production_does_not_serve_the_demo_unless_asked():
    from gru.app import build
    from gru.config import Settings

    production = {"env": "production", "secret": "s" * 32, "token1_verifier": "hmac", "token1_secret": "k" * 32,
                  "cors_origins": "https://school.example"}
    assert build(Settings(**production)).flask_app.test_client().get("/demo").status_code == 404
    assert build(Settings(**production, demo=True)).flask_app.test_client().get("/demo").status_code == 200
