"""The dashboard app: ``create_app(settings, lake)`` builds it, ``serve(settings)`` runs it."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dash
import flask
import werkzeug.exceptions
from dash import Input, Output, State, ctx, dcc, html, no_update
from werkzeug.exceptions import HTTPException

from runlake.app.settings import Settings, add_ui_arguments
from runlake.app.web import artifacts, charts, hosts, ids
from runlake.app.web.components import empty_state, page_header
from runlake.app.web.formatting import display_text
from runlake.app.web.pages import compare, experiments, run, runs
from runlake.app.web.services import Services
from runlake.core.errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from runlake.lake import Lake

PAGES = (experiments, runs, run, compare)


def assets_folder() -> str:
    """The installed ``runlake.assets`` package directory (works from a wheel, not only a checkout)."""
    folder = resources.files("runlake.assets")
    # Dash serves assets from a directory: a package imported from a zip archive has none.
    if not isinstance(folder, Path):
        raise RuntimeError(f"runlake.assets is not a directory on disk ({folder!r}): install runlake unzipped")
    return os.fspath(folder)


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
    charts.warm_up()  # plotly's lazy imports, here rather than in request threads (see there)
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder="",
        assets_folder=assets_folder(),
        title="runlake",
        update_title="",  # the tab keeps its title while callbacks run (Dash: None or "")
        suppress_callback_exceptions=True,
        on_error=_callback_error,
    )
    services.init_app(app.server)
    hosts.install_check(app.server, settings)
    app.server.register_error_handler(Exception, _server_error)
    for page in PAGES:
        # Layouts get the services as callbacks do. Dash keeps one page registry per process,
        # so the layout looks up the services of the app serving the request: several apps
        # (several lakes) in one process each render their own lake.
        dash.register_page(page.__name__, **page.REGISTER, layout=functools.partial(_render, page.layout))
    app.layout = _shell(lake, settings)
    for page in PAGES:
        page.register_callbacks(app, services)
    _register_damage_banner(app, services)
    artifacts.register_routes(app.server, services)
    # The services of this app: page layouts find them here per request (see _render).
    app.server.config["RUNLAKE_SERVICES"] = services
    return app


# Errors a callback raises on input of the wrong shape or type (a string where a number goes, a
# list where an object goes): the request was bad, not the server.
# Dash's own page router refuses a pathname outside the app the same way.
_BAD_INPUT = (TypeError, ValueError, KeyError, AttributeError, IndexError, dash.exceptions.UnsupportedRelativePath)


def _callback_error(error: Exception) -> Any:
    """Every callback's error handler: a bad request answers 4xx, never 500.

    Typed parsing (``grid.page_request``) raises ``InvalidArgument``; other wrong-typed input
    surfaces as a TypeError/ValueError/KeyError in the callback's code. Both become 400 with
    the reason (logged too, in case it is a bug rather than a bad body); an unknown run or
    experiment is 404. Anything else (an I/O error) stays a 500.
    """
    if isinstance(error, HTTPException):
        raise error
    if isinstance(error, NotFound):
        raise werkzeug.exceptions.NotFound(error.message)
    if isinstance(error, (InvalidArgument, *_BAD_INPUT)) and not isinstance(error, OSError):
        flask.current_app.logger.info("callback refused a bad request: %r", error)
        raise werkzeug.exceptions.BadRequest(f"Bad callback request: {type(error).__name__}: {error}")
    raise error


def _server_error(error: Exception) -> Any:
    """Errors outside a callback's own code: a callback body Dash cannot even dispatch
    (missing keys, wrong types, not JSON) is a 400; everything else keeps Flask's 500."""
    if isinstance(error, HTTPException):
        return error
    # A body whose outputs do not have the shape the callback declares (a list for a MATCH
    # output) makes Dash refuse the callback's return value, and one whose inputs, state or
    # outputs do not match the callback's definition (too many or too few, another component)
    # makes Dash's request validation raise CallbackException: the body was wrong, not the
    # server. (PreventUpdate, a CallbackException too, keeps Dash's own 204 handler.)
    malformed = (*_BAD_INPUT, dash.exceptions.CallbackException)
    if flask.request.path.endswith("_dash-update-component") and isinstance(error, malformed):
        flask.current_app.logger.info("malformed callback body: %r", error)
        return werkzeug.exceptions.BadRequest(f"Malformed callback request: {type(error).__name__}: {error}")
    # A script or style path Dash does not serve (an unknown library or file under
    # /_dash-component-suites/): nothing there, not a server fault.
    if isinstance(error, dash.exceptions.DependencyException):
        return werkzeug.exceptions.NotFound(str(error))
    flask.current_app.logger.exception("request %s failed", flask.request.path)
    return werkzeug.exceptions.InternalServerError()


def _render(layout: Callable[..., Any], **kwargs: Any) -> Any:
    """A page's layout for the app serving this request, given that app's services.

    Every page survives odd data: an unknown id in the URL is a "not found" page, an invalid
    URL value a message, and any other failure an error note on the page (logged with its
    traceback) instead of a blank screen. Damaged part files the lake skipped are announced
    above the page by the shell's banner (see ``_register_damage_banner``).
    """
    services: Services = flask.current_app.config["RUNLAKE_SERVICES"]
    try:
        page = layout(services, **kwargs)
    except NotFound as exc:
        page = _problem_page("Not found", exc.message)
    except InvalidArgument as exc:
        page = _problem_page("Invalid link", exc.message)
    except Exception as exc:  # the page must render; the log keeps the traceback
        flask.current_app.logger.exception("page %s failed", layout.__module__)
        page = _problem_page("This page could not be shown", f"{type(exc).__name__}: {exc}")
    return page


def _problem_page(title: str, text: str) -> html.Div:
    return html.Div(
        [
            page_header(title),
            empty_state(
                display_text(text, 400),
                [dcc.Link("Browse runs", href="/runs"), " or ", dcc.Link("go to experiments", href="/"), "."],
            ),
        ],
        className="page page-problem",
    )


def damage_banner(services: Services) -> html.Div | None:
    """ "1 damaged file skipped: …" when the lake skipped part files it could not read."""
    found = services.lake.damaged_files()
    if not found:
        return None
    names = ", ".join(display_text(f.path) for f in found[:3]) + (
        f" and {len(found) - 3} more" if len(found) > 3 else ""
    )
    return html.Div(
        [
            html.Strong(f"{len(found)} damaged file{'s' if len(found) != 1 else ''} skipped: "),
            html.Span(names),
            html.Span(
                " Everything else is shown. Run `runlake doctor --repair` to move them to the lake's _quarantine/ folder.",
                className="muted",
            ),
        ],
        id=ids.DAMAGE_BANNER,
        className="damage-banner",
        role="alert",
        title="\n".join(f"{display_text(f.path)}: {display_text(f.reason)}" for f in found),
    )


def _register_damage_banner(app: dash.Dash, services: Services) -> None:
    """The banner above every page, kept up to date: a damaged file is often found after the
    page rendered (the run page's charts read the metric files), so the banner is drawn when a
    page opens and again whenever the damaged files the lake skipped change (checked on a
    timer: an in-memory list, no I/O)."""

    @app.callback(
        Output(ids.DAMAGE_SLOT, "children"),
        Output(ids.DAMAGE_SHOWN, "data"),
        Input(ids.DAMAGE_TICK, "n_intervals"),
        Input("_pages_location", "pathname"),
        State(ids.DAMAGE_SHOWN, "data"),
    )
    def show_damage(_tick: Any, _path: Any, shown: Any) -> tuple[Any, Any]:
        paths = [f.path for f in services.lake.damaged_files()]
        if paths == shown and ctx.triggered_id == ids.DAMAGE_TICK:
            return no_update, no_update
        return damage_banner(services), paths


def _shell(lake: Lake, settings: Settings) -> html.Div:
    read_only = (
        html.Span(
            "read-only",
            className="pill pill-read-only",
            title="Started with --read-only: browsing only, every change is refused",
        )
        if settings.read_only
        else None
    )
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
                    read_only,
                    html.Span(display_text(lake.root), className="nav-lake", title="The lake this dashboard reads"),
                ],
                className="topbar",
                id=ids.NAV,
            ),
            html.Main(
                [
                    html.Div(id=ids.DAMAGE_SLOT),
                    dcc.Store(id=ids.DAMAGE_SHOWN, data=[]),
                    dcc.Interval(id=ids.DAMAGE_TICK, interval=int(max(settings.refresh_seconds, 1.0) * 1000)),
                    dash.page_container,
                ],
                className="content",
            ),
        ],
        # CSS hides every change control of a read-only dashboard; the server refuses them too.
        className="app read-only" if settings.read_only else "app",
    )


def _warm(lake: Lake) -> None:
    try:
        lake.warm()
    except Exception:  # a head start only: the pages read what they need anyway
        log.debug("runlake: warming the lake's state failed", exc_info=True)


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
    # A reopened state cache reads its blocks and index nodes as queries first touch them: read
    # what the first pages need now, in the background, not in the first visitor's request.
    threading.Thread(target=_warm, args=(lake,), name="runlake-warm", daemon=True).start()
    mode = " (read-only)" if settings.read_only else ""
    print(f"runlake dashboard for {settings.lake}{mode} at http://{settings.host}:{settings.port}/", flush=True)
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
