"""`pedagogy serve`: a read-only web viewer over a run store (SQLite or PostgreSQL).

Server-rendered pages (FastAPI and Jinja2; charts as inline SVG, `viewer.charts`), no script
and no build step. Every page reads the store through its readers (`open_store(url,
create=False)`: never creates a database; an older schema is upgraded in place as every opener
does) and writes nothing:

    /                         the runs: status, rounds, held-out mean, episodes
    /runs/{run}               a run: config, library versions, versions, held-out curves per
                              level, the curriculum's probabilities per round (a heatmap),
                              decisions per round, tokens and cost per role and arm, warnings
    /runs/{run}/audit         `audit verify` of the run's hash chain
    /runs/{run}/episodes      its episodes, filtered (round, arm, outcome, explained, tool) and
                              paged by key (`Store.episodes_page`)
    /runs/{run}/calls         its model calls outside episodes (checks, generator, refinements,
                              on-policy samples with the teacher's scores)
    /episodes/{episode}       an episode's turns in order: request, response, tool calls and
                              observations, verdicts, the explanation as shown, tokens, latency
    /versions/{version}       a model version: its parent chain, the jobs and data that made it,
                              its evaluations
    /compare?a=RUN&b=RUN      two runs' per-level curves on one chart and their config diff

An unknown id answers 404 with the page that lists what exists.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Query, Request

from pedagogy.errors import StoreError

TEMPLATES = Path(__file__).parent / "templates"

__all__ = ["create_app"]


def create_app(db_url: str) -> Any:
    """The viewer's ASGI app over the store at `db_url` (opened once, read-only use)."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse
    from fastapi.templating import Jinja2Templates

    from pedagogy.memory.store import open_store, redact_urls
    from pedagogy.viewer import pages

    store = open_store(db_url, create=False)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        store.close()

    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, default=str)
    app = FastAPI(
        title="pedagogy viewer", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.store = store
    shown_db = redact_urls(db_url)

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Any:
        return templates.TemplateResponse(
            request, name, {"db": shown_db, **context}, status_code=status
        )

    def page(
        request: Request,
        template: str,
        build: Callable[[], dict[str, Any]],
        what: str,
        retry: tuple[str, str] | None = None,
    ) -> Any:
        """`template` with the context `build` makes; an unknown id (StoreError) is a 404 page
        naming `what`, a bad query parameter (ValueError) a 400 page linking to `retry`."""
        try:
            return render(request, template, build())
        except StoreError:
            back, label, what_, status = "/", "the runs", what, 404
        except ValueError as err:
            if retry is None:
                raise
            (back, label), what_, status = retry, str(err), 400
        context = {"what": what_, "back": back, "back_label": label}
        return render(request, "missing.html", context, status)

    @app.get("/", response_class=HTMLResponse)
    def runs(request: Request) -> Any:
        return render(request, "runs.html", {"runs": pages.runs(store)})

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(request: Request, run_id: str) -> Any:
        return page(request, "run.html", lambda: pages.run(store, run_id), f"run {run_id}")

    @app.get("/runs/{run_id}/audit", response_class=HTMLResponse)
    def audit(request: Request, run_id: str) -> Any:
        build = lambda: pages.audit(store, run_id)  # noqa: E731
        return page(request, "audit.html", build, f"run {run_id}")

    @app.get("/runs/{run_id}/episodes", response_class=HTMLResponse)
    def episodes(
        request: Request,
        run_id: str,
        round: str = "",
        arm: str = "",
        outcome: str = "",
        explained: str = "",
        tool: str = "",
        after: str = "",
    ) -> Any:
        return page(
            request,
            "episodes.html",
            lambda: pages.episodes(store, run_id, round, arm, outcome, explained, tool, after),
            f"run {run_id}",
            (f"/runs/{run_id}/episodes", "the unfiltered list"),
        )

    @app.get("/runs/{run_id}/calls", response_class=HTMLResponse)
    def calls(
        request: Request, run_id: str, purpose: str = "", page_: str = Query("", alias="page")
    ) -> Any:
        return page(
            request,
            "calls.html",
            lambda: pages.calls(store, run_id, purpose, page_),
            f"run {run_id}",
            (f"/runs/{run_id}/calls", "page 1"),
        )

    @app.get("/episodes/{episode_id}", response_class=HTMLResponse)
    def episode(request: Request, episode_id: str) -> Any:
        build = lambda: pages.episode(store, episode_id)  # noqa: E731
        return page(request, "episode.html", build, f"episode {episode_id}")

    @app.get("/versions/{version_id}", response_class=HTMLResponse)
    def version(request: Request, version_id: str) -> Any:
        build = lambda: pages.version(store, version_id)  # noqa: E731
        return page(request, "version.html", build, f"model version {version_id}")

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request, a: str = "", b: str = "") -> Any:
        build = lambda: pages.compare(store, a, b)  # noqa: E731
        return page(request, "compare.html", build, f"runs {a!r} and {b!r}")

    return app
