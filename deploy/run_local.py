"""`make run`: the WeChat sandbox and the service (gunicorn) together; Ctrl-C stops both."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# payment confirmations, and the work after a payment (decision 0015)
WORKER_LANES = [("-q", "inbox"), ("-q", "default")]


def wait_until_up(url: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    env = dict(os.environ)
    sandbox_base = env.setdefault("DIANDIAN_WECHAT_API_BASE", "http://127.0.0.1:8090")
    bind = env.setdefault("DIANDIAN_BIND", "127.0.0.1:8000")
    sandbox_port = str(urlsplit(sandbox_base).port or 8090)
    processes: list[subprocess.Popen] = []
    if urlsplit(sandbox_base).hostname in {"127.0.0.1", "localhost"}:
        processes.append(subprocess.Popen(
            [PYTHON, "-m", "wechat.sandbox", "--host", "127.0.0.1", "--port", sandbox_port], cwd=ROOT, env=env))
        if not wait_until_up(f"{sandbox_base}/__sandbox__/stats"):
            print("WeChat sandbox did not start", file=sys.stderr)
            return stop(processes, 1)
    if env.get("DIANDIAN_REDIS_URL"):  # with Redis, payments are confirmed and followed up by a worker
        env.setdefault("DIANDIAN_JOBS", "workers")
    if env.get("DIANDIAN_JOBS") == "workers":  # the lanes of decision 0015, as deploy/systemd runs them
        for lane in WORKER_LANES:
            processes.append(subprocess.Popen(
                [PYTHON, "-m", "flask", "--app", "app:create_app", "worker", *lane], cwd=ROOT, env=env))
    processes.append(subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "app:create_app()"], cwd=ROOT, env=env))
    if not wait_until_up(f"http://{bind}/healthz"):
        print("the service did not start", file=sys.stderr)
        return stop(processes, 1)
    print(f"""
Diandian is running (Ctrl-C stops it):
  service       http://{bind}/            health: /healthz  ready: /readyz
  API docs      http://{bind}/api/docs    OpenAPI: /api/openapi.json
  console       http://{bind}/console     demo@diandian.local / diandian-demo-2021
                (project owner, settlement: projects@diandian.local, same password)
  simulator     http://{bind}/simulator   big screen: http://{bind}/screen/cdcnf21
  WeChat sandbox {sandbox_base}/           test hooks: /__sandbox__/
  payments      {"confirmed by `flask worker -q inbox`, then `-q default` (certificates, counters, pushes)"
                 " (DIANDIAN_JOBS=workers)" if env.get("DIANDIAN_JOBS") == "workers"
                 else "confirmed in the notify request (DIANDIAN_JOBS=inline)"}
Try a login:
  CODE=$(curl -s -XPOST {sandbox_base}/__sandbox__/login-code -H 'Content-Type: application/json' -d '{{"openid":"o_demo"}}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["code"])')
  TOKEN=$(curl -s -XPOST http://{bind}/api/v1/auth/login -H 'Content-Type: application/json' -d "{{\\"code\\":\\"$CODE\\"}}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
  curl -s http://{bind}/api/v1/me -H "Authorization: Bearer $TOKEN"
""", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("a process exited; stopping", file=sys.stderr)
        return stop(processes, 1)
    except KeyboardInterrupt:
        return stop(processes, 0)


def stop(processes: list[subprocess.Popen], code: int) -> int:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
