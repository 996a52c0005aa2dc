"""The service as gunicorn serves it, plus a count of the SQL statements each worker sends, written
every 0.25 s to ``$DIANDIAN_BENCH_COUNTS/<pid>`` (bench_screen.py adds the files up)."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine


def create():
    from app import create_app

    application = create_app()
    folder = Path(os.environ["DIANDIAN_BENCH_COUNTS"])
    counted = {"statements": 0}

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(*_args) -> None:
        counted["statements"] += 1

    def write() -> None:
        path = folder / str(os.getpid())
        while folder.exists():
            try:
                path.write_text(str(counted["statements"]))
            except OSError:
                return  # the bench is over
            time.sleep(0.25)

    threading.Thread(target=write, name="bench-counts", daemon=True).start()
    return application
