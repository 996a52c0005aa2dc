"""Failpoints: kill the process at a named point, to prove crash recovery in tests.

``DIANDIAN_FAILPOINTS="checkout.confirm.before_commit@/tmp/marker"`` makes the first process that
reaches that point create the marker file and die at once (like ``kill -9``); later processes
pass. Never armed in production.
"""
from __future__ import annotations

import os


def failpoint(name: str) -> None:
    spec = os.environ.get("DIANDIAN_FAILPOINTS", "")
    if not spec or os.environ.get("DIANDIAN_ENV") == "production":
        return
    for item in spec.split(","):
        point, _, marker = item.partition("@")
        if point != name or not marker:
            continue
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(137)
