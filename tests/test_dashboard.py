"""The dashboard at /dashboard: its pages and files over HTTP, GET /v1/projects on both
databases, and the page itself in Debian's chromium (Playwright, never a downloaded browser)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import struct
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from _service import ThreadServer, database

from budget_manager.server import dashboard

KEY = "dash-key-0123456789"
NARROW = "narrow-key-0123456789"  # may use only the projects "side" and "empty"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHROMIUM = "/usr/bin/chromium"
RESOURCES = Path(dashboard.__file__).resolve().parent.parent / "resources" / "dashboard"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _put(url: str, project: str, user: str, budget: str, parent: str | None = None) -> None:
    body = {"total_budget": budget, "duration": "monthly", "parent": parent}
    answer = requests.put(f"{url}/v1/projects/{project}/users/{user}", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text


def _cost(url: str, project: str, user: str, cost: str, model: str) -> None:
    body = {"cost": cost, "model": model}
    answer = requests.post(
        f"{url}/v1/projects/{project}/users/{user}/cost", json=body, headers=AUTH, timeout=10
    )
    assert answer.status_code == 200, answer.text


def seed(url: str) -> None:
    """Project "acme": team > alice, bob; carol alone; costs on two models; one open hold."""
    _put(url, "acme", "team", "100")
    _put(url, "acme", "alice", "40", "team")
    _put(url, "acme", "bob", "30", "team")
    _put(url, "acme", "carol", "10")
    _cost(url, "acme", "alice", "12.5", "gpt-4o")
    _cost(url, "acme", "bob", "3.25", "claude-sonnet-4")
    _cost(url, "acme", "carol", "9.5", "gpt-4o")
    hold = {"user": "bob", "amount": "2", "model": "gpt-4o", "hold_id": "hold-for-bob"}
    assert requests.post(f"{url}/v1/projects/acme/holds", json=hold, headers=AUTH).ok
    _put(url, "side", "dora", "5")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    folder = tmp_path_factory.mktemp("dashboard")
    server = ThreadServer(
        store_url=f"sqlite:///{folder}/budgets.db",
        api_keys=[KEY, f"{NARROW}=side,empty"],
    ).start()
    seed(server.url)
    yield server
    server.stop()


# -- over HTTP -----------------------------------------------------------------------------------
class _Links(HTMLParser):
    """Every URL a page names in an attribute that makes the browser load something."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.urls.append(value)
        if tag == "script" and not dict(attrs).get("src"):
            self.inline_scripts += 1


def _links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def test_the_page_is_served_with_a_key(service: ThreadServer) -> None:
    answer = requests.get(f"{service.url}/dashboard", headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "Spend against budget" in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}])
def test_without_a_valid_key_the_page_is_a_login_page_with_401(
    service: ThreadServer, headers: dict[str, str]
) -> None:
    answer = requests.get(f"{service.url}/dashboard?project=acme", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["content-type"].startswith("text/html")
    assert 'type="password"' in answer.text
    assert "Spend against budget" not in answer.text  # not the dashboard
    assert "acme" not in answer.text and "alice" not in answer.text


def test_the_data_endpoints_refuse_without_a_key(service: ThreadServer) -> None:
    for path in ("/v1/projects", "/v1/projects/acme/holds", "/v1/projects/acme/report?by=day"):
        answer = requests.get(service.url + path)
        assert answer.status_code == 401, path
        assert answer.json()["field"] == "Authorization"
    refused = requests.post(f"{service.url}/get_budget", json={"project_name": "acme"})
    assert refused.status_code == 401


def test_the_pages_load_only_same_origin_urls() -> None:
    for name in ("dashboard.html", "login.html"):
        links = _links((RESOURCES / name).read_text())
        assert links.urls, name
        assert links.inline_scripts == 0, name  # the CSP allows none
        for url in links.urls:
            assert not re.match(r"^([a-z][a-z0-9+.-]*:|//)", url, re.I) or url == "data:,", url
    for name in ("dashboard.js", "login.js"):
        script = (RESOURCES / name).read_text()
        assert not re.search(r"""["'`](https?:)?//""", script), name
    library = (RESOURCES / "frappe-charts.min.umd.js").read_text()
    # the only absolute URLs in the library are XML namespace names, never fetched
    found = set(re.findall(r"https?://[^\"' )]+", library))
    assert found == {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_the_csp_forbids_other_origins(service: ThreadServer) -> None:
    for headers in (AUTH, {}):
        policy = requests.get(f"{service.url}/dashboard", headers=headers).headers
        rules = dict(
            (part.split()[0], part.split()[1:])
            for part in policy["content-security-policy"].split(";")
        )
        assert rules["default-src"] == ["'none'"]
        for directive in ("script-src", "connect-src"):
            assert rules[directive] == ["'self'"]


def test_the_static_files_need_no_key_and_are_exactly_the_shipped_ones(
    service: ThreadServer,
) -> None:
    for name, media_type in dashboard.STATIC_FILES.items():
        answer = requests.get(f"{service.url}/dashboard/static/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == media_type
        assert answer.content == (RESOURCES / name).read_bytes()
        again = requests.get(
            f"{service.url}/dashboard/static/{name}",
            headers={"If-None-Match": answer.headers["etag"]},
        )
        assert again.status_code == 304 and again.content == b""
    for name in ("VENDORED.md", "dashboard.html", "..%2F..%2Fserver%2Fapp.py", "nothing.js"):
        answer = requests.get(f"{service.url}/dashboard/static/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["status"] == "error"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/../../v1/projects",
        "/dashboard/static/%2E%2E/%2E%2E/v1/projects",
        "/dashboard/static/..%2F..%2Fv1%2Fprojects",
        "/dashboard/static/x/../../../get_budget",
    ],
)
def test_the_open_static_prefix_reaches_nothing_else(service: ThreadServer, path: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        connection.request("GET", path)  # sent as is: no client folds the dots
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()
    assert answer.status == 404, path
    assert b'"success"' not in body and b"acme" not in body


def test_the_vendored_library_is_the_one_recorded() -> None:
    record = (RESOURCES / "VENDORED.md").read_text()
    digest = hashlib.sha256((RESOURCES / "frappe-charts.min.umd.js").read_bytes()).hexdigest()
    row = next(line for line in record.splitlines() if "`frappe-charts.min.umd.js`" in line)
    assert digest in row and "1.6.2" in row and "MIT" in row
    assert (RESOURCES / "frappe-charts.LICENSE").read_text().startswith("MIT License")


def test_projects_lists_what_the_key_may_use(service: ThreadServer) -> None:
    every = requests.get(f"{service.url}/v1/projects", headers=AUTH)
    assert every.json() == {"status": "success", "projects": ["acme", "side"]}
    narrow = requests.get(
        f"{service.url}/v1/projects", headers={"Authorization": f"Bearer {NARROW}"}
    )
    assert narrow.json()["projects"] == ["empty", "side"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_projects_on_each_database(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as url:
        server = ThreadServer(store_url=url, api_keys=[KEY]).start()
        try:
            base = server.url
            assert requests.get(f"{base}/v1/projects", headers=AUTH).json()["projects"] == []
            for project in ("zeta", "alpha", "a b/c"):
                _put(base, requests.utils.quote(project, safe=""), "u", "1")
            found = requests.get(f"{base}/v1/projects", headers=AUTH).json()["projects"]
            assert found == ["a b/c", "alpha", "zeta"]
            deleted = requests.delete(f"{base}/v1/projects/alpha/users/u", headers=AUTH)
            assert deleted.status_code == 200
            found = requests.get(f"{base}/v1/projects", headers=AUTH).json()["projects"]
            assert found == ["a b/c", "zeta"]
        finally:
            server.stop()


def test_without_keys_the_page_is_open(tmp_path: Path) -> None:
    server = ThreadServer(store_url=f"sqlite:///{tmp_path}/b.db", api_keys=[]).start()
    try:
        assert requests.get(f"{server.url}/dashboard").status_code == 200
    finally:
        server.stop()


# -- in a browser --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright; skipped without them, except under CI=true."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"CI=true requires playwright: {exc}")
        pytest.skip(f"playwright is not installed: {exc}")
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail(f"CI=true requires {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


def _users(page: Any) -> list[list[str]]:
    rows = page.locator("#users tbody tr")
    return [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]


def _wait_for_users(page: Any) -> None:
    page.wait_for_selector("#users tbody tr[data-user='carol']")


def test_a_browser_without_a_key_is_asked_for_one_and_keeps_it_for_the_session(
    service: ThreadServer, page: Any
) -> None:
    url = f"{service.url}/dashboard?project=acme"
    answer = page.goto(url)
    assert answer.status == 401
    assert page.locator("#users").count() == 0
    page.fill("#key", "wrong-key")
    page.click("button[type=submit]")
    page.wait_for_selector("text=That key was refused.")
    assert page.evaluate("sessionStorage.length") == 0

    page.fill("#key", KEY)
    page.click("button[type=submit]")
    _wait_for_users(page)
    assert page.title() == "Budget dashboard"
    assert page.evaluate("sessionStorage.getItem('budget-manager.key')") == KEY
    assert KEY not in page.url
    # a reload answers the login page again (401), which uses the kept key without asking
    again = page.reload()
    assert again.status == 401
    _wait_for_users(page)
    assert KEY not in page.url
    page.click("#forget")
    page.wait_for_selector("#key")
    assert page.evaluate("sessionStorage.length") == 0


def test_a_key_that_stops_working_brings_back_the_login_page(tmp_path: Path, page: Any) -> None:
    store = f"sqlite:///{tmp_path}/budgets.db"
    before = ThreadServer(store_url=store, api_keys=[KEY]).start()
    try:
        _put(before.url, "acme", "carol", "10")
        page.goto(f"{before.url}/dashboard?project=acme")
        page.fill("#key", KEY)
        page.click("button[type=submit]")
        _wait_for_users(page)
    finally:
        before.stop()
    # the same address, now with another key: the next poll is refused
    after = ThreadServer(port=before.port, store_url=store, api_keys=["another-key-0123"]).start()
    try:
        page.wait_for_selector("text=The saved key is no longer accepted. Enter a key.")
        assert page.evaluate("sessionStorage.length") == 0
        assert page.locator("#users").count() == 0
    finally:
        after.stop()


def test_the_page_shows_the_seeded_users_parents_models_and_holds(
    service: ThreadServer, page: Any
) -> None:
    page.set_extra_http_headers(AUTH)
    answer = page.goto(f"{service.url}/dashboard?project=acme")
    assert answer.status == 200
    _wait_for_users(page)
    users = _users(page)
    # parents before their children; name, parent, bar, spent, budget, held, remaining, period
    assert [row[0] for row in users] == ["carol", "team", "alice", "bob"]
    by_name = {row[0]: row for row in users}
    assert by_name["alice"][1] == "team" and by_name["team"][1] == "—"
    assert by_name["team"][3:7] == ["$15.75", "$100.00", "$0.00", "$84.25"]
    assert by_name["bob"][3:7] == ["$3.25", "$30.00", "$2.00", "$26.75"]
    assert by_name["carol"][2] == "95.0%"
    assert page.locator("tr[data-user='carol'] .meter.warn").count() == 1  # 80% or more
    assert page.locator("tr[data-user='alice'] .meter:not(.warn):not(.over)").count() == 1
    assert page.get_attribute("tr[data-user='alice'] .meter", "aria-label") == (
        "$12.50 of $40.00 (31.3%)"
    )
    models = page.locator("#models tbody tr").all_inner_texts()
    assert [m.split("\t")[:2] for m in models] == [
        ["gpt-4o", "$22.00"],
        ["claude-sonnet-4", "$3.25"],
    ]
    holds = page.locator("#holds tbody tr").all_inner_texts()
    assert len(holds) == 1 and holds[0].split("\t")[:4] == [
        "hold-for-bob",
        "bob",
        "gpt-4o",
        "$2.00",
    ]
    # the charts are SVG, their labels text
    page.wait_for_function(
        "() => [...document.querySelectorAll('#days-chart rect.bar')]"
        ".some((bar) => Number(bar.getAttribute('height')) > 0)"
    )
    assert page.locator("#days-chart svg text").count() > 5
    assert "$25.25 in the last 30 days; $25.25 today." in page.inner_text("#days-summary")
    assert page.locator("#project option").all_inner_texts() == ["acme", "side"]


def test_the_page_updates_after_a_cost_is_posted(service: ThreadServer, page: Any) -> None:
    page.set_extra_http_headers(AUTH)
    page.goto(f"{service.url}/dashboard?project=side")
    page.wait_for_selector("tr[data-user='dora'] td.spent")
    before = page.inner_text("tr[data-user='dora'] td.spent")
    assert before == "$0.00"
    _cost(service.url, "side", "dora", "1.75", "gpt-4o-mini")
    page.wait_for_function(
        "() => document.querySelector(\"tr[data-user='dora'] td.spent\").textContent === '$1.75'",
        timeout=10_000,
    )
    page.wait_for_selector("#models tbody tr:has-text('gpt-4o-mini')")
    assert page.url.endswith("/dashboard?project=side")  # no reload, nothing added to the URL


def test_a_project_chosen_in_the_selector_is_shown(service: ThreadServer, page: Any) -> None:
    page.set_extra_http_headers(AUTH)
    page.goto(f"{service.url}/dashboard")
    _wait_for_users(page)  # the first project the key sees: acme
    page.select_option("#project", "side")
    page.wait_for_selector("tr[data-user='dora']")
    assert page.locator("tr[data-user='carol']").count() == 0
    assert page.url.endswith("/dashboard?project=side")


def test_the_history_span_can_be_chosen(service: ThreadServer, page: Any) -> None:
    page.set_extra_http_headers(AUTH)
    page.goto(f"{service.url}/dashboard?project=acme")
    page.wait_for_function("() => document.querySelectorAll('#days-chart rect.bar').length === 30")
    page.select_option("#span", "7")
    page.wait_for_function("() => document.querySelectorAll('#days-chart rect.bar').length === 7")
    assert page.inner_text("#days-summary").startswith("$25.25 in the last 7 days;")
    assert page.inner_text("#models-title") == "Spend per model, last 7 days"
    assert page.url.endswith("/dashboard?project=acme&days=7")
    page.reload()
    page.wait_for_selector("#days-summary:has-text('last 7 days')")
    assert page.input_value("#span") == "7"


def test_a_narrow_key_sees_only_its_projects(service: ThreadServer, page: Any) -> None:
    page.set_extra_http_headers({"Authorization": f"Bearer {NARROW}"})
    page.goto(f"{service.url}/dashboard")
    page.wait_for_selector("#users-empty:visible")  # "empty" comes first and has no budgets
    assert page.locator("#project option").all_inner_texts() == ["empty", "side"]
    page.goto(f"{service.url}/dashboard?project=acme")
    page.wait_for_selector("#problem:visible")
    assert "acme" in page.inner_text("#problem")
    assert page.locator("#users tbody tr").count() == 0


def test_a_new_project_joins_the_selector(tmp_path: Path, page: Any) -> None:
    server = ThreadServer(store_url=f"sqlite:///{tmp_path}/b.db", api_keys=[KEY]).start()
    try:
        page.set_extra_http_headers(AUTH)
        page.goto(f"{server.url}/dashboard")
        page.wait_for_selector("#users-empty:visible")  # no project at all yet
        assert page.locator("#project option").count() == 0
        _put(server.url, "first", "erin", "8")
        page.wait_for_selector("tr[data-user='erin']")
        _put(server.url, "second", "fay", "8")
        page.wait_for_selector("#project option[value='second']", state="attached")
        assert page.input_value("#project") == "first"  # the choice stays
    finally:
        server.stop()


def test_names_with_slashes_dots_and_spaces(tmp_path: Path, page: Any) -> None:
    server = ThreadServer(store_url=f"sqlite:///{tmp_path}/b.db", api_keys=[KEY]).start()
    try:
        project, user = "../a b/c", "ü/..%2F"
        quoted = requests.utils.quote(project, safe="").replace(".", "%2E")
        _put(server.url, quoted, requests.utils.quote(user, safe="").replace(".", "%2E"), "3")
        page.set_extra_http_headers(AUTH)
        page.goto(f"{server.url}/dashboard")
        page.wait_for_selector("#users tbody tr")
        assert page.locator("#project option").all_inner_texts() == [project]
        assert _users(page)[0][0] == user
        page.wait_for_selector("#updated:has-text('Updated')")  # every request of a poll answered
        assert page.locator("#problem").is_hidden()
    finally:
        server.stop()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_screenshot_of_the_dashboard(service: ThreadServer, page: Any, tmp_path: Path) -> None:
    page.set_extra_http_headers(AUTH)
    page.goto(f"{service.url}/dashboard?project=acme")
    _wait_for_users(page)
    path = tmp_path / "dashboard.png"
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    width, height = _png_size(data)
    assert width == 1280 and height >= 900
    assert data.rstrip().endswith(b"IEND\xaeB`\x82")
    # a page of one colour compresses to a few kilobytes; this one has text, bars and a chart
    assert len(data) > 30_000
