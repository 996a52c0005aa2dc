"""gunicorn settings: ``gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'``.

gthread workers: the service's requests wait on PostgreSQL, Redis and WeChat, so a few threads per
process keep a core busy without the memory of more processes; one process per core (at least 2,
so one busy or restarting worker never leaves the port unserved). docs/PERFORMANCE.md has the
measurements; override with DIANDIAN_WORKERS / DIANDIAN_THREADS / DIANDIAN_WORKER_CLASS.

Metrics: every worker counts into files under PROMETHEUS_MULTIPROC_DIR (set here before a worker
imports the app, emptied when gunicorn starts), so a scrape of /metrics sees all workers' counts.
"""
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

bind = os.environ.get("DIANDIAN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("DIANDIAN_WORKERS", max(2, multiprocessing.cpu_count())))
worker_class = os.environ.get("DIANDIAN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("DIANDIAN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # the app logs one JSON line per request itself
errorlog = "-"
loglevel = os.environ.get("DIANDIAN_GUNICORN_LOG_LEVEL", "warning")

# Our own directory (removed at exit) unless the operator names one (e.g. /run/diandian/metrics).
_DEFAULT_METRICS_DIR = os.path.join(tempfile.gettempdir(), f"diandian-metrics-{os.getpid()}")  # the master's
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _DEFAULT_METRICS_DIR)  # before any worker imports the app
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
_OWN_METRICS_DIR = str(METRICS_DIR) == _DEFAULT_METRICS_DIR  # also after a reload (HUP) re-reads this file


def on_starting(server):
    """Counts of a previous run would be added to this one's: start from an empty directory."""
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """A worker that exited keeps its counters; its live gauges (none today) are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)


def worker_exit(server, worker):
    """Write the scene visits this worker counted but has not written yet (decision 0006)."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "app_context"):
        from carbon.scenes.service import flush_visits

        flush_visits(app)
