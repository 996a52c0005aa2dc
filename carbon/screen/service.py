"""The venue big screen: a scene's live snapshot, read once per refresh and shared by every viewer.

However many screens and phones watch a scene, a process reads it from the database at most once
per ``SCREEN_REFRESH_SECONDS``: the first viewer to find the snapshot stale reads it (outside the
lock), the others wait on one condition and are woken when it changes (decision 0013).
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import select

from carbon.accounts.service import ANONYMOUS_NAME, masked
from carbon.certificates.models import Certificate
from carbon.checkout.models import Order
from carbon.core import extensions as ext
from carbon.core.clock import CHINA_TZ
from carbon.core.db import db
from carbon.leaderboards import service as leaderboards
from carbon.scenes import codes, stats
from carbon.scenes import service as scenes
from carbon.scenes.models import Scene
from carbon.scenes.service import _shown as shown_counters  # the figures resolve shows guests

NEWEST_SHOWN = 6
TOP_SHOWN = 5


def find_scene(key: str) -> Scene:
    """A scene guests may see (live or closed), by its public id (``scn_…``) or its code."""
    if not key.startswith("scn_"):
        key = db.session.scalar(select(Scene.public_id).where(Scene.code == key)) or key
    return scenes.shown_scene(key)


def mask_name(name: str | None) -> str:
    """A certificate's name as a wall shows it: masked, as an opted-out guest's nickname is."""
    name = (name or "").strip()
    return masked(name) if name else ANONYMOUS_NAME


def read(scene_id: int) -> dict:
    """The one shared read of a scene: counters, progress, newest certificates, the leaderboard's top."""
    scene = db.session.get(Scene, scene_id)
    if scene is None:
        raise scenes.SceneNotFound()
    shown = shown_counters(stats.totals(scene.id))
    board = leaderboards.top(scene, "all", TOP_SHOWN)
    progress = board["progress"]
    newest = db.session.execute(
        select(Certificate.number, Certificate.issued_at, Order.beneficiary_name, Order.kg)
        .join(Order, Order.id == Certificate.order_id)
        .where(Order.scene_id == scene.id, Certificate.revoke_seq.is_(None))
        .order_by(Certificate.id.desc()).limit(NEWEST_SHOWN)).all()
    return {
        "scene": {"id": scene.public_id, "code": scene.code, "name_zh": scene.name_zh, "name_en": scene.name_en,
                  "city": scene.city, "status": scene.status, "scene_string": codes.scene_string(scene.code),
                  "link": scenes.h5_link(scene)},
        "kg_neutralized": str(shown["kg_neutralized"]),
        "money_raised": str(shown["money_raised"]),
        "footprints": int(shown["footprints"]),  # a SUM on PostgreSQL is numeric
        "participants": board["board"]["participants"],
        "progress": {"neutralized_kg": str(progress["neutralized_kg"]),
                     "estimated_kg": None if progress["estimated_kg"] is None else str(progress["estimated_kg"]),
                     "percent": None if progress["percent"] is None else str(progress["percent"])},
        "newest": [{"key": _row_key(number), "name": mask_name(name), "kg": f"{kg:.3f}",
                    "issued_at": issued_at.astimezone(CHINA_TZ).strftime("%H:%M")}
                   for number, issued_at, name, kg in newest],
        "top": [{"rank": entry["rank"], "name": entry["name"], "kg": str(entry["kg"])} for entry in board["entries"]],
    }


def _row_key(number: str) -> str:
    """What tells the wall's rows apart: never the certificate's number, whose public record names
    the beneficiary in full (the wall masks names)."""
    return hashlib.blake2s(number.encode(), key=ext.settings().SECRET_KEY.encode()[:32], digest_size=8).hexdigest()


@dataclass
class Snapshot:
    data: dict
    text: str  # the JSON sent to viewers
    etag: str
    read_at: float  # time.monotonic() of the read that confirmed it


@dataclass
class Feeds:
    """Per process: the latest snapshot of each watched scene, and the viewers waiting for a change."""

    reader: Callable[[int], dict]
    refresh_seconds: float = 1.0
    reads: int = 0  # shared reads done (for tests and the bench)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _snapshots: dict[int, Snapshot] = field(default_factory=dict)
    _reading: set[int] = field(default_factory=set)
    closed: bool = False  # set by close(): viewers get nothing more and no read starts

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    def close(self, timeout: float = 5.0) -> None:
        """Stop this process's feeds: waiting viewers are woken with nothing (their streams end), no
        new read starts, and this returns once the reads under way have ended (or after ``timeout``),
        so nothing reads the database after a stopping server's teardown."""
        with self._lock:
            self.closed = True
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._reading, timeout)

    def wait(self, scene_id: int, seen: str | None, timeout: float) -> Snapshot | None:
        """A snapshot whose etag is not ``seen`` (at once if there is one; with ``seen`` None, a fresh one),
        or None after ``timeout`` or once the feeds are closed.
        Reads the scene when its snapshot is stale and no other viewer of this process is reading it."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                while True:
                    if self.closed:
                        return None
                    now = time.monotonic()
                    snapshot = self._snapshots.get(scene_id)
                    fresh = snapshot is not None and now - snapshot.read_at < self.refresh_seconds
                    if snapshot is not None and snapshot.etag != seen and (fresh or seen is not None):
                        return snapshot  # a first look gets a fresh one; a viewer who saw another, any newer
                    if not fresh and scene_id not in self._reading:
                        self._reading.add(scene_id)
                        break  # this viewer reads
                    if now >= deadline:
                        return None
                    until_stale = snapshot.read_at + self.refresh_seconds - now if fresh else self.refresh_seconds
                    self._changed.wait(min(deadline - now, max(until_stale, 0.01)))
            self._read(scene_id)

    def current(self, scene_id: int) -> Snapshot:
        """The scene's snapshot, read now if it is stale (what a polling viewer gets)."""
        return self.wait(scene_id, None, self.refresh_seconds * 5) or self._snapshots[scene_id]

    def _read(self, scene_id: int) -> None:
        try:
            data = self.reader(scene_id)
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        except BaseException:
            with self._lock:
                self._reading.discard(scene_id)
                self._changed.notify_all()  # another viewer may try
            raise
        etag = hashlib.sha256(text.encode()).hexdigest()[:20]
        with self._lock:  # stored and released in one step: no viewer sees it stale with nobody reading
            self.reads += 1
            self._reading.discard(scene_id)
            old = self._snapshots.get(scene_id)
            if old is not None and old.etag == etag:
                old.read_at = time.monotonic()
            else:
                if len(self._snapshots) >= 10_000:
                    self._snapshots.clear()
                self._snapshots[scene_id] = Snapshot(data, text, etag, time.monotonic())
            self._changed.notify_all()


def feeds() -> Feeds:
    """This app's feeds; each read runs in an app context of its own (its session closed after)."""
    state = current_app.extensions.get("diandian.screen")
    if state is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]

        def read_in_context(scene_id: int) -> dict:
            with app.app_context():
                return read(scene_id)

        state = current_app.extensions.setdefault("diandian.screen", Feeds(
            read_in_context, refresh_seconds=ext.settings().SCREEN_REFRESH_SECONDS))
    return state
