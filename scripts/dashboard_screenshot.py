"""Take docs/dashboard.png: a budget service on a fresh SQLite file in a temporary folder, filled
through its API with two weeks of spend, photographed by Debian's chromium through Playwright.

    .venv/bin/python scripts/dashboard_screenshot.py [--out docs/dashboard.png]

Needs the [dev] extra and ``apt-get install chromium``. Touches nothing outside the temporary
folder and the output file; reaches nothing beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import requests
import uvicorn

from budget_manager.server import create_app
from budget_manager.server.serving import ServiceConfig

ROOT = Path(__file__).resolve().parent.parent
KEY = "dashboard-demo-key"
PROJECT = "acme"
DAY = 86400.0
#: True once the spend-per-day chart has drawn its bars (frappe-charts draws them 700 ms late).
BARS_DRAWN = (
    "() => [...document.querySelectorAll('#days-chart rect.bar')]"
    ".some((bar) => Number(bar.getAttribute('height')) > 0)"
)


class Clock:
    """The service's clock, moved back while the history is filled."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(url: str, clock: Clock) -> None:
    """Budgets in a hierarchy, 14 days of costs on three models, and two open holds."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {KEY}"
    base = f"{url}/v1/projects/{PROJECT}"

    def put(user: str, budget: str, parent: str | None = None) -> None:
        body = {"total_budget": budget, "duration": "monthly", "parent": parent}
        api.put(f"{base}/users/{user}", json=body, timeout=10).raise_for_status()

    clock.offset = -14 * DAY
    put("research", "400")
    put("support", "150")
    put("alice", "120", "research")
    put("bob", "200", "research")
    put("carol", "90", "support")
    put("dave", "40", "support")
    plan = [
        ("alice", "gpt-4o", 2.1),
        ("bob", "claude-sonnet-4", 3.4),
        ("carol", "gpt-4o-mini", 0.9),
    ]
    for day in range(14):
        clock.offset = -(13 - day) * DAY
        for n, (user, model, cost) in enumerate(plan):
            amount = f"{cost * (1 + ((day * 7 + n * 3) % 5) / 4):.4f}"
            body = {"cost": amount, "model": model}
            api.post(f"{base}/users/{user}/cost", json=body, timeout=10).raise_for_status()
    clock.offset = 0.0
    api.post(f"{base}/users/dave/cost", json={"cost": "37.5", "model": "gpt-4o"}, timeout=10)
    for user, amount, model in (("bob", "4.00", "claude-sonnet-4"), ("alice", "1.50", "gpt-4o")):
        body = {"user": user, "amount": amount, "model": model, "ttl": 3600}
        api.post(f"{base}/holds", json=body, timeout=10).raise_for_status()


def screenshot(url: str, out: Path) -> None:
    """The dashboard of ``PROJECT`` at 1280 pixels wide, once its charts are drawn."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(
            viewport={"width": 1280, "height": 900},
            extra_http_headers={"Authorization": f"Bearer {KEY}"},
        )
        page.goto(f"{url}/dashboard?project={PROJECT}")
        page.wait_for_selector("#holds tbody tr")
        page.wait_for_function(BARS_DRAWN)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    out = parser.parse_args().out
    out.parent.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(f"sqlite:///{folder}/budgets.db", api_keys=[KEY], clock=clock)
        port = _free_port()
        server = uvicorn.Server(ServiceConfig(app, host="127.0.0.1", port=port))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        while not server.started:
            time.sleep(0.05)
        try:
            seed(url, clock)
            screenshot(url, out)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
