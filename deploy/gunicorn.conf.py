"""gunicorn settings: ``gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'``.

2 gthread workers × 4 threads per machine of 2 cores (one process per core, at least 2, so one busy
or restarting worker never leaves the port unserved), chosen from bench/bench_forum.py
(docs/PERFORMANCE.md, "Forum morning"). The routes are CPU-bound in Python: about 84 % of a worker's
CPU is spent inside the request threads. The waits that threads cover are the WeChat calls of login
and checkout, and 4 threads cover them. On a shared 2-core machine, 8 threads and 3 workers × 2
threads gave the same CPU per complete guest flow (500-630 ms, within the run-to-run noise) and no
more flows/s. They cost memory: a worker peaked at 157 MB with 2 threads, 167-202 MB with 4 and
192 MB with 8 (glibc keeps a malloc arena per thread; deploy/ sets MALLOC_ARENA_MAX=2, which gave
161-163 MB with 4). deploy/ also sets MALLOC_MMAP_THRESHOLD_=131072: a fixed threshold keeps a card's
pixel buffers (a few MB each, one per drawing thread) mapped and given back when freed, where
glibc's sliding threshold moved them into the heap it keeps (a worker drawing every card under the
forum bench: 155 MB without it, 147 MB with it, the same CPU). A third process adds ~140 MB and takes cores from the workers and PostgreSQL on
the same machine. Override with DIANDIAN_WORKERS / DIANDIAN_THREADS / DIANDIAN_WORKER_CLASS.

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
worker_connections = int(os.environ.get("DIANDIAN_WORKER_CONNECTIONS", "1000"))  # gevent: the big screen's streams
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
