"""The service under gunicorn (several worker processes) for reliability tests, started by the
benchmarks' own launcher; a loopback balancer in front of several of them."""
from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self

from bench.harness import free_port, gunicorn, job_worker, pids_matching


def service_env(database_url: str, sandbox_url: str, base: str, extra_env: dict[str, str] | None = None) -> dict:
    return {"DIANDIAN_ENV": "testing", "DIANDIAN_DATABASE_URL": database_url,
            "DIANDIAN_WECHAT_API_BASE": sandbox_url, "DIANDIAN_WECHATPAY_API_BASE": sandbox_url,
            "DIANDIAN_PUBLIC_BASE_URL": base, "DIANDIAN_SECRET_KEY": "test-secret-key-for-diandian-tests-0001",
            "DIANDIAN_LOGIN_RATE_PER_MINUTE_CLIENT": "100000", "DIANDIAN_LOGIN_RATE_PER_MINUTE_OPENID": "100000",
            **(extra_env or {})}


@contextmanager
def gunicorn_service(database_url: str, sandbox_url: str, *, workers: int = 4,
                     extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """``app:create_app()`` under gunicorn on a free port, its notify URL pointing at itself."""
    with app_server(database_url, sandbox_url, workers=workers, extra_env=extra_env) as server:
        yield server.url


@dataclass
class AppServer:
    url: str
    port: int

    def pids(self) -> list[int]:
        """The gunicorn master and its workers (they share the master's command line)."""
        return pids_matching("gunicorn", f"127.0.0.1:{self.port} ")

    def kill(self) -> list[int]:
        """SIGKILL the master and every worker at once, as a machine that dies would."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids


@contextmanager
def app_server(database_url: str, sandbox_url: str, *, public_base: str | None = None, workers: int = 4,
               threads: int = 8, extra_env: dict[str, str] | None = None) -> Iterator[AppServer]:
    """One gunicorn master (gthread workers) on a free port; its notify URL is ``public_base``
    (a balancer in front of several servers) or itself."""
    port = free_port()
    base = public_base or f"http://127.0.0.1:{port}"
    with gunicorn(service_env(database_url, sandbox_url, base, extra_env), workers=workers, worker_class="gthread",
                  threads=threads, port=port) as served:
        yield AppServer(served, port)


@contextmanager
def worker_process(database_url: str, sandbox_url: str, base: str, extra_env: dict[str, str] | None = None,
                   args: tuple[str, ...] = ()):
    """``flask worker [args]`` for the service at ``base`` (same settings)."""
    with job_worker(service_env(database_url, sandbox_url, base, extra_env), args=args) as process:
        yield process


class Balancer:
    """A round-robin TCP balancer on loopback, as nginx's upstream in front of the app servers:
    each new connection goes to the next backend that accepts it (one that refuses is skipped);
    when a backend dies mid-request the client's connection is cut, as it would be."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = list(ports)
        self._turn = itertools.count()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stopped = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections: dict[int, int] = dict.fromkeys(self.ports, 0)  # backend port -> connections passed

    def add(self, port: int) -> None:
        with self._lock:
            self.ports.append(port)
            self.connections.setdefault(port, 0)

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, name="balancer", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        with self._lock:  # shutdown first: it wakes the threads blocked in accept() and recv(), close() does not
            for sock in (self._listener, *self._open):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _backend(self) -> socket.socket | None:
        start = next(self._turn)
        for i in range(len(self.ports)):
            port = self.ports[(start + i) % len(self.ports)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                continue  # refused: that server is down, try the next
            upstream.settimeout(None)
            with self._lock:
                self.connections[port] += 1
            return upstream
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream = self._backend()
        if upstream is None:
            client.close()
            return
        with self._lock:
            self._open.update((client, upstream))
        pump = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        pump.start()
        self._pump(client, upstream)
        pump.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:  # reset (a backend killed) or closed: cut both ways
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
