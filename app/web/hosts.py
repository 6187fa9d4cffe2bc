"""The Host-header check of a dashboard bound to loopback (protection against DNS rebinding).

A page on evil.example.com can make the browser resolve its own name to 127.0.0.1 and then
talk to the dashboard as a same-origin page, with no login in the way, and delete runs. The
browser still sends ``Host: evil.example.com``: a dashboard that only listens on loopback
answers only loopback names and addresses (and the extra names given with ``--allow-host``,
for a reverse proxy), and refuses every other Host with 403.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import flask

if TYPE_CHECKING:
    from runlake.app.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """Whether a bind address or Host name is loopback (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a Host header, without its port (``[::1]:8050`` -> ``::1``)."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text[1:]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def allowed(header: str | None, extra: tuple[str, ...] = ()) -> bool:
    if not header:
        return False
    name = host_name(header).rstrip(".")
    return is_loopback(name) or name in {h.lower().rstrip(".") for h in extra}


def install_check(server: flask.Flask, settings: Settings) -> None:
    """Refuse requests with a foreign Host when the dashboard is bound to a loopback address."""
    if not is_loopback(settings.host):
        return  # bound to a public interface on purpose: the operator's proxy decides

    @server.before_request
    def check_host() -> flask.Response | None:
        header = flask.request.headers.get("Host")
        if allowed(header, settings.allow_hosts):
            return None
        return flask.Response(
            f"Host {header!r} is not allowed: this runlake dashboard listens on {settings.host} and answers "
            "loopback names only (DNS rebinding protection). Behind a reverse proxy, start it with "
            "--allow-host NAME.\n",
            status=403,
            mimetype="text/plain",
        )
