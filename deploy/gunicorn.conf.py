"""gunicorn settings: ``gunicorn -c deploy/gunicorn.conf.py 'app:create_app()'``."""
import multiprocessing
import os

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


def worker_exit(server, worker):
    """Write the scene visits this worker counted but has not written yet (decision 0006)."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "app_context"):
        from carbon.scenes.service import flush_visits

        flush_visits(app)
