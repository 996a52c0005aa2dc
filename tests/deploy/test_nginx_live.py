"""deploy/nginx/diandian.conf served by a real nginx in front of backends on loopback: the headers the
app trusts, the overload limit (503 at once, in the envelope, WeChat Pay's notifies never turned
away), and every answer nginx makes itself (413, 400, no backend, /metrics) in the API's envelope.

The site is run as written except what a test machine must change: the upstreams' host names
(compose services) become loopback ports, the listen ports free ports, the certificate placeholders
a self-signed pair, and ``http2 on`` (nginx ≥ 1.25.1) is dropped on an older nginx (Debian 12 has
1.22). Each replacement must find its text, so a reshaped site fails here instead of being skipped.
`make test` installs nginx-light with apt-get when it can; without an nginx binary these skip."""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bench.harness import free_port
from tests.conftest import ROOT

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE = ROOT / "deploy" / "nginx" / "diandian.conf"
LIMIT = int(re.search(r"limit_conn diandian_app_requests (\d+);", SITE.read_text()).group(1))
pytestmark = [pytest.mark.skipif(not os.access(NGINX, os.X_OK),
                                 reason="no nginx binary (make test installs nginx-light with apt-get as root)"),
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]  # our own certificate


class Backend:
    """A threaded WSGI server standing in for an app server: echoes what reached it; ``/hold`` waits
    until released, so requests stay in flight."""

    def __init__(self, name: str) -> None:
        self.name, self.seen, self.release = name, [], threading.Event()
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @Request.application
    def app(self, request: Request) -> Response:
        body = request.get_data()
        self.seen.append(request.path)
        if request.path == "/hold":
            self.release.wait(30)
        return Response(json.dumps({"server": self.name, "path": request.path, "body_bytes": len(body),
                                    "headers": {k: v for k, v in request.headers.items()}}),
                        content_type="application/json")

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def nginx_version() -> tuple[int, ...]:
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=True).stderr
    return tuple(int(n) for n in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out).groups())


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "diandian.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert, private = directory / "fullchain.pem", directory / "privkey.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, private


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, f"the site no longer has {old!r}"
    return text.replace(old, new)


@contextlib.contextmanager
def nginx(directory: Path, app: int, notify: int, stream: int):
    """The site on free loopback ports in front of those backend ports; yields (https, http) base URLs."""
    tls, plain = free_port(), free_port()
    cert, key = self_signed(directory)
    site = SITE.read_text(encoding="utf-8")
    for old, new in [("server app:8000", f"server 127.0.0.1:{app}"), ("server notify:8002", f"server 127.0.0.1:{notify}"),
                     ("server stream:8001", f"server 127.0.0.1:{stream}"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{tls} ssl;"), ("listen 80;", f"listen 127.0.0.1:{plain};"),
                     ("/etc/nginx/tls/fullchain.pem", str(cert)), ("/etc/nginx/tls/privkey.pem", str(key)),
                     ("/var/www/acme", str(directory))]:
        site = replace_once(site, old, new)
    site = re.sub(r"^\s*listen \[::\]:.*$", "", site, flags=re.MULTILINE)
    if nginx_version() < (1, 25, 1):
        site = replace_once(site, "http2 on;", "")
    (directory / "site.conf").write_text(site, encoding="utf-8")
    temp = "".join(f"    {kind}_temp_path {directory / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (directory / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'} warn;\n"
        f"events {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n{temp}    include {directory / 'site.conf'};\n}}\n",
        encoding="utf-8")
    process = subprocess.Popen([NGINX, "-p", str(directory), "-e", str(directory / "error.log"),
                                "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", tls), timeout=0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        yield f"https://127.0.0.1:{tls}", f"http://127.0.0.1:{plain}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def backends():
    servers = {name: Backend(name) for name in ("app", "notify", "stream")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def site(tmp_path, backends):
    with nginx(tmp_path, backends["app"].port, backends["notify"].port, backends["stream"].port) as urls:
        yield urls


def get(url: str, **kwargs) -> requests.Response:
    return requests.get(url, verify=False, timeout=30, **kwargs)


def assert_envelope(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status and response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"} and error["code"] == code
    assert re.fullmatch(r"[0-9a-f]{32}", error["request_id"])  # nginx's $request_id, which the app logs too
    return error


def test_the_app_gets_the_headers_it_trusts_set_by_nginx(site, backends):
    https, http = site
    seen = get(f"{https}/api/v1/me", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "http",
                                              "X-Request-ID": "forged", "Host": "diandian.example.com"}).json()
    headers = seen["headers"]
    assert seen["server"] == "app" and headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Host"] == "diandian.example.com" and headers["Host"] == "diandian.example.com"
    assert headers["X-Forwarded-For"].split(", ")[-1] == "127.0.0.1"  # ProxyFix (1 proxy) takes the last: the real peer
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])  # nginx's own id, never the client's
    redirect = requests.get(f"{http}/api/v1/me", allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"].startswith("https://")
    notify = requests.post(f"{https}/api/v1/payments/wechatpay/notify", data=b'{"id": "EV-1"}', verify=False,
                           timeout=10).json()
    assert notify["server"] == "notify" and notify["body_bytes"] == len(b'{"id": "EV-1"}')
    stream = get(f"{https}/screen/cdcnf21/events").json()
    assert stream["server"] == "stream"


def test_past_the_limit_a_guest_is_answered_503_at_once_and_wechat_pay_still_gets_through(site, backends):
    https, _ = site
    crowd = LIMIT + 40

    def guest(_n: int) -> tuple[requests.Response, float]:
        started = time.monotonic()
        response = get(f"{https}/hold")
        return response, time.monotonic() - started

    with ThreadPoolExecutor(crowd) as pool:
        answers = [pool.submit(guest, n) for n in range(crowd)]
        deadline = time.monotonic() + 20
        while backends["app"].seen.count("/hold") < LIMIT and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the rest have been turned away by now
        notify = requests.post(f"{https}/api/v1/payments/wechatpay/notify", data=b"{}", verify=False, timeout=10)
        screen = get(f"{https}/screen/cdcnf21/events")
        held = backends["app"].seen.count("/hold")
        backends["app"].release.set()
        results = [answer.result() for answer in answers]
    assert held == LIMIT  # never more at once than the limit reached the app
    served = [seconds for response, seconds in results if response.status_code == 200]
    refused = [(response, seconds) for response, seconds in results if response.status_code != 200]
    assert len(served) == LIMIT and len(refused) == crowd - LIMIT
    for response, _ in refused:
        assert assert_envelope(response, 503, "service.overloaded")["details"] == {"retry_after_seconds": 2}
        assert response.headers["Retry-After"] == "2"
    assert max(seconds for _, seconds in refused) < min(served)  # turned away at once, not after a wait
    assert notify.status_code == 200 and notify.json()["server"] == "notify"  # never limited
    assert screen.status_code == 200 and screen.json()["server"] == "stream"


def test_a_body_over_the_limit_is_413_in_the_envelope_and_never_reaches_the_app(site, backends):
    https, _ = site
    too_big = requests.post(f"{https}/api/v1/footprints", data=b"x" * (64 * 1024 + 1), verify=False, timeout=10,
                            headers={"Content-Type": "application/json"})
    assert_envelope(too_big, 413, "request.too_large")
    assert "/api/v1/footprints" not in backends["app"].seen
    fits = requests.post(f"{https}/api/v1/footprints", data=b"x" * (64 * 1024), verify=False, timeout=10)
    assert fits.json()["body_bytes"] == 64 * 1024  # exactly the app's own limit still passes to the app


def test_what_nginx_cannot_read_is_400_in_the_envelope(site):
    https, _ = site
    port = int(https.rsplit(":", 1)[1])
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE

    def raw(request: bytes) -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain, \
                context.wrap_socket(plain, server_hostname="diandian.example.com") as tls:
            tls.sendall(request)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    for request, expected in ((b"NOT HTTP AT ALL\x00\r\n\r\n", 400),
                              (b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 400),
                              (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)):
        status, body = raw(request)
        error = json.loads(body)["error"]
        assert (status, error["code"]) == (expected, "request.bad_request"), (request[:40], status, body[:200])
    assert_envelope(get(f"{https}/metrics"), 404, "request.not_found")  # Prometheus scrapes the app itself


def test_no_app_server_answering_is_503_in_the_envelope_and_the_notify_path_answers_wechat_pays_way(tmp_path):
    nobody = [free_port() for _ in range(3)]  # nothing listens on these
    with nginx(tmp_path, *nobody) as (https, _):
        error = assert_envelope(get(f"{https}/api/v1/me"), 503, "service.unavailable")
        assert error["details"] == {"retry_after_seconds": 2}
        notify = requests.post(f"{https}/api/v1/payments/wechatpay/notify", data=b"{}", verify=False, timeout=10)
        assert notify.status_code == 503 and notify.json() == {"code": "FAIL", "message": "service unavailable"}
