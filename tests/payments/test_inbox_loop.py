"""The inbox worker's loop (carbon/jobs/worker.py): after a batch that was not full it waits
``GATHER_SECONDS`` for a few more entries to gather; after a full one (a backlog) it goes straight on."""
from __future__ import annotations

import threading

from sqlalchemy import func, select

from carbon.checkout import inbox
from carbon.checkout.models import InboxEntry
from carbon.core.db import db
from carbon.jobs import worker


class FirstPause(threading.Event):
    """A stop event that records the loop's first pause and stops it there."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout)
        self.set()
        return True


def test_a_full_batch_is_followed_at_once_and_only_the_last_small_one_gathers(app):
    backlog = inbox.BATCH + 10  # a full batch, then ten
    with app.app_context():
        for i in range(backlog):  # refunds WeChat Pay closed, of payments unknown here: ignored, done
            inbox.record("refund", f"r{i}:CLOSED", f"otn{i}", None, "query", {
                "out_trade_no": f"otn{i}", "out_refund_no": f"or{i}", "refund_id": f"r{i}", "status": "CLOSED",
                "mchid": "1900000001", "refund_fen": 1})
    stop, confirmed = FirstPause(), threading.Event()
    worker._inbox_loop(app, stop, confirmed)
    assert stop.pauses == [worker.GATHER_SECONDS] and confirmed.is_set()
    with app.app_context():  # the loop paused only once the backlog was gone
        assert db.session.scalar(select(func.count()).select_from(InboxEntry)
                                 .where(InboxEntry.status == "pending")) == 0
