"""`pedagogy serve`: the read-only viewer over a real run's SQLite store.

Fast part (the ASGI app in process, over a small acting run made once for the module): every
page type answers, unknown ids are 404 pages that say where to look, bad filters are 400, the
episodes list pages by key without gaps or repeats, filters filter, an episode's turns come in
order, and nothing is written. Browser part: the real server on 127.0.0.1 and Debian's headless
Chromium through its chromedriver: every page type loads without console errors, links lead
where they say; skipped where Chromium is not installed (CI installs it). With
PEDAGOGY_SCREENSHOTS set to a folder, the browser test saves a screenshot of each page type.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from pedagogy.cli import app as cli
from pedagogy.config import load_config
from pedagogy.memory import open_store
from tests.test_idempotent import SMALL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished two-round acting run (tool calls, explanations, versions) and what is in it."""
    from pedagogy.runner import run_loop

    folder = tmp_path_factory.mktemp("viewer")
    data = json.loads(json.dumps(SMALL))
    data.update(
        workdir=str(folder / "work"),
        db=str(folder / "work" / "pedagogy.db"),
        agent={"enabled": True, "max_steps": 3},
    )
    (folder / "run.yaml").write_text(yaml.safe_dump(data))
    result = asyncio.run(run_loop(load_config(folder / "run.yaml")))
    assert result.status == "completed"
    with open_store(result.db_url, create=False) as store:
        episodes = store.episodes(result.run_id, with_turns=True)
        versions = store.model_versions(result.run_id)
    return {
        "db": str(folder / "work" / "pedagogy.db"),
        "run_id": result.run_id,
        "episodes": episodes,
        "versions": versions,
    }


@pytest.fixture(scope="module")
def client(stored):
    from fastapi.testclient import TestClient

    from pedagogy.viewer.app import create_app

    with TestClient(create_app(stored["db"])) as c:
        yield c


def _counts(db: str) -> dict[str, int]:
    from pedagogy.memory import schema as S

    with open_store(db, create=False) as store, store._engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in S.metadata.sorted_tables
        }


def test_every_page_type_answers_and_writes_nothing(stored, client):
    before = _counts(stored["db"])
    run_id = stored["run_id"]
    runs = client.get("/")
    assert runs.status_code == 200 and f'href="/runs/{run_id}"' in runs.text
    run = client.get(f"/runs/{run_id}")
    assert run.status_code == 200
    assert "<svg" in run.text and 'id="heatmap"' in run.text and 'id="versions"' in run.text
    for v in stored["versions"]:
        assert f'href="/versions/{v.id}"' in run.text
        assert client.get(f"/versions/{v.id}").status_code == 200
    audit = client.get(f"/runs/{run_id}/audit")
    assert audit.status_code == 200 and re.search(r'id="audit-result">clean: \d+ links', audit.text)
    listing = client.get(f"/runs/{run_id}/episodes")
    assert listing.status_code == 200
    episode = stored["episodes"][0]
    page = client.get(f"/episodes/{episode.id}")
    assert page.status_code == 200 and episode.problem_id
    compare = client.get(f"/compare?a={run_id}&b={run_id}")
    assert compare.status_code == 200 and "same config" in compare.text
    calls = client.get(f"/runs/{run_id}/calls")
    with open_store(stored["db"], create=False) as store:
        outside = store.turns_outside_episodes(run_id)
    assert calls.status_code == 200
    assert calls.text.count("<tr>") - (1 if outside else 0) == len(outside)
    assert client.get(f"/runs/{run_id}/calls?page=x").status_code == 400
    assert _counts(stored["db"]) == before


def test_unknown_ids_are_404_pages_and_bad_filters_400(stored, client):
    for path in ("/runs/nope", "/runs/nope/episodes", "/episodes/nope", "/versions/nope"):
        answer = client.get(path)
        assert answer.status_code == 404 and 'id="missing"' in answer.text, path
        assert 'href="/"' in answer.text
    bad = client.get(f"/runs/{stored['run_id']}/episodes?outcome=lucky")
    assert bad.status_code == 400 and "outcome must be one of" in bad.text
    assert client.get(f"/runs/{stored['run_id']}/episodes?after=x").status_code == 400


def test_episodes_page_by_key_without_gaps_or_repeats_and_filters_filter(stored, client):
    from pedagogy.memory.records import EpisodeFilter

    run_id, episodes = stored["run_id"], stored["episodes"]
    with open_store(stored["db"], create=False) as store:
        seen, after = [], None
        while True:
            page = store.episodes_page(run_id, EpisodeFilter(), after, limit=5)
            seen += [(r.round, r.index) for r in page.rows]
            if page.after is None:
                break
            after = page.after
        assert seen == [(e.round, e.index) for e in episodes]  # in order, each once
        explained = store.episodes_page(run_id, EpisodeFilter(explained=True), limit=1000)
        assert {r.id for r in explained.rows} == {e.id for e in episodes if e.explained}
        used = store.episodes_page(run_id, EpisodeFilter(tool=True), limit=1000)
        assert {r.id for r in used.rows} == {e.id for e in episodes if e.tool_calls}
        unused = store.episodes_page(run_id, EpisodeFilter(tool=False), limit=1000)
        assert {r.id for r in unused.rows} == {e.id for e in episodes if not e.tool_calls}
        assert used.rows
    html = client.get(f"/runs/{run_id}/episodes?round=2&explained=yes").text
    listed = set(re.findall(r'href="/episodes/([0-9a-f]+)"', html))
    assert listed == {e.id for e in episodes if e.round == 2 and e.explained}


def test_an_episode_shows_its_turns_in_order_with_tool_calls_and_verdicts(stored, client):
    ep = next(e for e in stored["episodes"] if e.tool_calls and e.explained)
    html = client.get(f"/episodes/{ep.id}").text
    positions = [html.index(f'id="turn-{t.seq}"') for t in sorted(ep.turns, key=lambda t: t.seq)]
    assert positions == sorted(positions) and len(positions) == len(ep.turns)
    assert f"tool <b>{ep.tool_calls[0].tool}</b>" in html
    assert "verdict:" in html


def test_serve_refuses_a_missing_database_and_a_taken_port_in_one_line(stored, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["serve", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no database at" in missing.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        busy = runner.invoke(cli, ["serve", "--db", stored["db"], "--port", str(port)])
    assert busy.exit_code == 2 and "choose another --port" in busy.output


# -- in a real browser ---------------------------------------------------------------------------


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def served(stored):
    import uvicorn

    from pedagogy.viewer.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(stored["db"]), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    _chromium() is None,
    reason="needs Chromium and chromedriver (apt install chromium chromium-driver)",
)
def test_every_page_type_in_headless_chromium_without_console_errors(stored, served):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    browser, driver_path = _chromium()  # type: ignore[misc]
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    shots = os.environ.get("PEDAGOGY_SCREENSHOTS")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:

        def visit(name: str, url: str | None = None, status: int = 200) -> None:
            if url is not None:
                driver.get(url)
            errors = [
                e
                for e in driver.get_log("browser")
                if e["level"] == "SEVERE"  # a 404 page's own status is not an error of the page
                and not (
                    status == 404 and e["source"] == "network" and "(Not Found)" in e["message"]
                )
            ]
            assert not errors, (name, errors)
            assert "Internal Server Error" not in driver.page_source, name
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(Path(shots) / f"{name}.png"))

        run_id = stored["run_id"]
        visit("runs", served + "/")
        driver.find_element(By.CSS_SELECTOR, f'a[href="/runs/{run_id}"]').click()
        assert driver.current_url.endswith(f"/runs/{run_id}")
        visit("run")
        driver.find_element(By.ID, "audit-link").click()
        assert "clean" in driver.find_element(By.ID, "audit-result").text
        visit("audit")
        visit("episodes", f"{served}/runs/{run_id}/episodes?explained=yes")
        driver.find_element(By.CSS_SELECTOR, 'a[href^="/episodes/"]').click()
        turns = driver.find_elements(By.CSS_SELECTOR, "#turns .turn")
        ids = [int(t.get_attribute("id").split("-")[1]) for t in turns]
        assert ids and ids == sorted(ids)
        visit("episode")
        visit("version", f"{served}/versions/{stored['versions'][-1].id}")
        visit("compare", f"{served}/compare?a={run_id}&b={run_id}")
        visit("calls", f"{served}/runs/{run_id}/calls")
        visit("missing", f"{served}/episodes/nope", status=404)
        assert driver.find_element(By.ID, "missing").text.startswith("No episode nope")
    finally:
        driver.quit()


def test_the_viewer_bench_times_each_episodes_page():
    from pedagogy.benchmarks.throughput_viewer import episodes_page

    report = episodes_page(episodes=300, per_round=100, repeats=1)
    assert report["episodes"] == 300 and len(report["pages"]) == 3
    for ms in report["pages"].values():
        assert 0 < ms["min"] <= ms["median"] <= ms["max"]
    assert report["worst_median_ms"] == max(p["median"] for p in report["pages"].values())
