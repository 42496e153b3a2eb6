"""The demo report in headless Chromium, driven over the DevTools protocol: no console errors, no network,
charts drawn, tables filter, sort and drill down. Screenshots go to var/test-artifacts/."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from etl.cli.demo_cmd import sqlite_urls
from etl.engine.hooks import default_hooks
from etl.engine.pipeline import run_sync
from etl.report.build import write_reports
from tests.helpers.project import make_project

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


class DevTools:
    """A minimal Chrome DevTools protocol client over one websocket (flattened sessions)."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=20)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            data = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if data.get("id") == self.next_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            self.events.append(data)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def close(self) -> None:
        self.ws.close()


class Page:
    """One tab of the browser."""

    def __init__(self, tools: DevTools) -> None:
        self.tools = tools
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.call(method)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.tools.call(method, params, self.session)

    def open(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.tools.wait_for("Page.loadEventFired")
        deadline = time.monotonic() + 20
        while self.js("document.documentElement.getAttribute('data-ready')") != "1":
            assert time.monotonic() < deadline, "the report script never finished"
            time.sleep(0.1)

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        height = int(self.call("Page.getLayoutMetrics")["cssContentSize"]["height"])
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1440, "height": min(height, 8000), "deviceScaleFactor": 1, "mobile": False},
        )
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and network requests seen so far."""
        found = []
        for event in self.tools.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(f"log: {params['entry'].get('text')}")
            elif method == "Network.requestWillBeSent":
                url = params.get("request", {}).get("url", "")
                if not url.startswith(("file:", "data:", "about:")):
                    found.append(f"network: {url}")
        return found


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("browser") / "demo"
    config, _ = make_project(folder, sqlite_urls(folder))
    summary, _ = run_sync(config, full_refresh=True, hooks=default_hooks(config))
    assert summary.status == "success", summary.message
    return {
        "zh-CN": write_reports(config, summary.run_id),
        "en": write_reports(config, summary.run_id, lang="en", out_dir=folder / "reports" / "en"),
    }


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = (profile.parent / "chromium.log").open("w")
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"], stdout=subprocess.DEVNULL, stderr=log
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"chromium did not start (exit {proc.poll()})")
        time.sleep(0.1)
    port, path = port_file.read_text().splitlines()[:2]
    tools = DevTools(f"ws://127.0.0.1:{port}{path}")
    try:
        yield tools
    finally:
        tools.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_report_in_chromium(browser: DevTools, reports: dict[str, dict[str, Path]]) -> None:
    paths = reports["zh-CN"]
    csv = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    page = Page(browser)
    page.open(paths["html"].as_uri())
    assert page.js("document.title").startswith("主数据对账报告")
    # charts drawn as inline SVG
    assert page.js("document.querySelectorAll('#chart-classes svg rect.seg').length") >= 5
    assert page.js("document.querySelectorAll('#chart-trend svg rect.seg').length") >= 1
    assert page.js("document.querySelectorAll('#diff-table tbody tr.row').length") == min(50, len(csv))
    page.screenshot(ARTIFACTS / "report.png")

    # filter by class
    wanted = int((csv["class"] == "field_mismatch").sum())
    shown = page.js(
        """(() => {
          const sel = document.getElementById('diff-filter-class');
          sel.value = 'field_mismatch';
          sel.dispatchEvent(new Event('change'));
          const rows = [...document.querySelectorAll('#diff-table tbody tr.row')];
          return {n: rows.length, classes: [...new Set(rows.map(r => r.dataset.class))],
                  count: document.getElementById('diff-count').textContent};
        })()"""
    )
    assert shown["classes"] == ["field_mismatch"] and shown["n"] == min(50, wanted)
    assert f"{wanted} / {len(csv)}" in shown["count"]

    # search within the filter, then drill down into the row
    key = csv[(csv["class"] == "field_mismatch") & (csv["entity"] == "contract")]["golden_key"].iloc[0]
    found = page.js(
        f"""(() => {{
          const box = document.getElementById('diff-search');
          box.value = {json.dumps(key)};
          box.dispatchEvent(new Event('input'));
          const rows = [...document.querySelectorAll('#diff-table tbody tr.row')];
          rows[0].click();
          const drill = document.querySelector('#diff-table tr.drill');
          return {{n: rows.length, keys: rows.map(r => r.children[2].textContent),
                   drill: drill ? drill.textContent : ''}};
        }})()"""
    )
    assert found["n"] >= 1 and set(found["keys"]) == {key}
    assert "erpoa reconcile accept" in found["drill"] and "ERP" in found["drill"]

    # sort by run count, clear the filters
    sorted_state = page.js(
        """(() => {
          document.getElementById('diff-search').value = '';
          const sel = document.getElementById('diff-filter-class');
          sel.value = '';
          sel.dispatchEvent(new Event('change'));
          const th = [...document.querySelectorAll('#diff-table th')][2];
          th.click(); th.click();
          const keys = [...document.querySelectorAll('#diff-table tbody tr.row')].map(r => r.children[2].textContent);
          return {sort: th.getAttribute('aria-sort'), first: keys[0], last: keys[keys.length - 1],
                  n: keys.length};
        })()"""
    )
    assert sorted_state["sort"] == "descending" and sorted_state["n"] == min(50, len(csv))

    # quarantine table filters by rule
    rule = page.js(
        """(() => {
          const sel = document.getElementById('q-filter-rule');
          sel.value = 'duplicate_key';
          sel.dispatchEvent(new Event('change'));
          return [...document.querySelectorAll('#q-table tbody tr.row')].map(r => r.children[5].textContent);
        })()"""
    )
    assert rule and set(rule) == {"duplicate_key"}
    page.screenshot(ARTIFACTS / "report-drilldown.png")
    assert page.problems() == []


def test_english_report_in_chromium(browser: DevTools, reports: dict[str, dict[str, Path]]) -> None:
    browser.events.clear()
    page = Page(browser)
    page.open(reports["en"]["html"].as_uri())
    assert page.js("document.querySelector('h1').textContent") == "Master Data Reconciliation Report"
    assert page.js("document.querySelectorAll('svg').length") >= 2
    page.screenshot(ARTIFACTS / "report-en.png")
    assert page.problems() == []
