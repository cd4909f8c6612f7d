"""Downloads that fail quickly, with a one-line reason, on a machine without internet."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit
from urllib.request import getproxies

from corrgd.data.errors import one_line

DOWNLOAD_TIMEOUT_S = 30.0
"""Limit for resolving the host name and for each socket operation of a download."""

DOWNLOAD_DISABLED = "download disabled"


def try_download(fetch: Callable[[], object], url: str, timeout: float | None = None) -> str | None:
    """Run ``fetch()``, which downloads from ``url``; None on success, else why it failed.

    The host (or the configured proxy) is resolved first in a daemon thread, so a resolver
    that hangs costs ``timeout`` seconds rather than minutes; the download itself runs with
    ``timeout`` as the default socket timeout (process-wide while it runs).
    ``timeout`` defaults to ``DOWNLOAD_TIMEOUT_S``.
    """
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    scheme = urlsplit(url).scheme
    host = urlsplit(getproxies().get(scheme, url)).hostname or ""
    problem = _resolve(host, timeout)
    if problem is not None:
        return f"download failed: {problem}"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        fetch()
    except Exception as error:  # any failure means "no data"; the caller reports it
        return one_line(f"download failed: {type(error).__name__}: {error}")
    finally:
        socket.setdefaulttimeout(previous)
    return None


def _resolve(host: str, timeout: float) -> str | None:
    """None if ``host`` resolves within ``timeout`` seconds, else what went wrong."""
    outcome: list[OSError | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, None)
            outcome.append(None)
        except OSError as error:
            outcome.append(error)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer resolving {host} within {timeout:g} s"
    if outcome[0] is not None:
        return f"cannot resolve {host}: {outcome[0]}"
    return None
