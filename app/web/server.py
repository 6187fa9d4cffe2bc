"""The dashboard app: ``create_app(settings, lake)`` builds it, ``serve(settings)`` runs it."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

import dash
import flask
from dash import dcc, html

from runlake.app.settings import Settings, add_ui_arguments
from runlake.app.web import artifacts, ids
from runlake.app.web.pages import compare, experiments, run, runs
from runlake.app.web.services import Services

if TYPE_CHECKING:
    from runlake.lake import Lake

PAGES = (experiments, runs, run, compare)


def assets_folder() -> str:
    """The installed ``runlake.assets`` package directory (works from a wheel, not only a checkout)."""
    return os.fspath(resources.files("runlake.assets"))


def create_app(settings: Settings, lake: Lake) -> dash.Dash:
    """Build the dashboard for one lake.

    Args:
        settings: the dashboard's settings (refresh interval, debug).
        lake: an open ``runlake.lake.Lake``; every read and change goes through it.

    Returns:
        A ``dash.Dash`` app; ``app.server`` is its Flask server. Callbacks are attached to
        this instance, so several apps (several lakes) can live in one process.
    """
    services = Services(lake, settings)
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder="",
        assets_folder=assets_folder(),
        title="runlake",
        update_title=None,
        suppress_callback_exceptions=True,
    )
    services.init_app(app.server)
    for page in PAGES:
        # Layouts get the services as callbacks do. Dash keeps one page registry per process,
        # so the layout looks up the services of the app serving the request: several apps
        # (several lakes) in one process each render their own lake.
        dash.register_page(page.__name__, **page.REGISTER, layout=functools.partial(_render, page.layout))
    app.layout = _shell(lake)
    for page in PAGES:
        page.register_callbacks(app, services)
    artifacts.register_routes(app.server, services)
    # The services of this app: page layouts find them here per request (see _render).
    app.server.config["RUNLAKE_SERVICES"] = services
    return app


def _render(layout: Callable[..., Any], **kwargs: Any) -> Any:
    """A page's layout for the app serving this request, given that app's services."""
    return layout(flask.current_app.config["RUNLAKE_SERVICES"], **kwargs)


def _shell(lake: Lake) -> html.Div:
    return html.Div(
        [
            html.Header(
                [
                    dcc.Link([html.Span("◆", className="brand-mark"), "runlake"], href="/", className="brand"),
                    html.Nav(
                        [
                            dcc.Link("Experiments", href="/", className="nav-link"),
                            dcc.Link("Runs", href="/runs", className="nav-link"),
                        ],
                        className="nav-links",
                    ),
                    html.Span(str(lake.root), className="nav-lake", title="The lake this dashboard reads"),
                ],
                className="topbar",
                id=ids.NAV,
            ),
            html.Main(dash.page_container, className="content"),
        ],
        className="app",
    )


def serve(settings: Settings) -> None:
    """Open the lake and run the dashboard's server (blocking) on ``settings.host:port``."""
    from runlake.lake import Lake, state_cache
    from runlake.lake.maintenance import upkeep

    if not os.path.isdir(settings.lake) and "://" not in settings.lake:
        print(f"runlake: no lake at {settings.lake} yet; runs appear as training jobs write them", flush=True)
    # A dashboard restarts onto the state its last run folded (only what changed since is
    # read), and keeps a million-run state within DuckDB's memory limit.
    lake = Lake(settings.lake, cache=state_cache.from_env(default=True))
    app = create_app(settings, lake)
    # The dashboard is a long-lived process: it merges full size tiers in the background
    # whenever no writer or cron job holds the maintenance lease.
    upkeep.start(lake)
    print(f"runlake dashboard for {settings.lake} at http://{settings.host}:{settings.port}/", flush=True)
    app.run(host=settings.host, port=settings.port, debug=settings.debug, use_reloader=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runlake.app.web.server", description="Serve the runlake dashboard."
    )
    add_ui_arguments(parser)
    serve(Settings.from_args(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
