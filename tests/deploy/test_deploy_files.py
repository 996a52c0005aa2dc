"""What can be checked of deploy/ without Docker: the compose file and the nginx site parse and say
what they must, the Dockerfile runs as a user with the CJK font, the systemd units, and every
``DIANDIAN_`` setting the code reads is in deploy/env.example and the README's table."""
from __future__ import annotations

import ast
import configparser
import dataclasses
import json
import re
import shlex
import subprocess
import sys

import crossplane
import pytest
import yaml

from carbon.core.settings import PREFIX, Settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
SOURCES = [ROOT / "app.py", *(ROOT / "carbon").rglob("*.py"), *(ROOT / "wechat").rglob("*.py"),
           *(ROOT / "payments").rglob("*.py"), *DEPLOY.glob("*.py")]
NAME = re.compile(rf"^{PREFIX}[A-Z0-9_]+$")


def settings_read_by_the_code() -> set[str]:
    """The fields of Settings (read as PREFIX + name), and every other ``DIANDIAN_*`` string literal
    in the service's code and deploy/*.py (gunicorn's, the failpoints')."""
    names = {PREFIX + f.name for f in dataclasses.fields(Settings) if f.name != "extra"}
    for path in SOURCES:
        if "sandbox" in path.parts and "wechat" in path.parts:
            continue  # the emulator of WeChat is not the service
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value):
                names.add(node.value)
    return names


SETTINGS = settings_read_by_the_code()


def test_the_settings_are_found():
    assert {"DIANDIAN_SECRET_KEY", "DIANDIAN_METRICS_TOKEN", "DIANDIAN_WORKERS", "DIANDIAN_FAILPOINTS"} <= SETTINGS
    assert len(SETTINGS) > 40


def test_every_setting_is_in_env_example_and_nothing_else():
    text = (DEPLOY / "env.example").read_text(encoding="utf-8")
    listed = set(re.findall(rf"^#?\s*({PREFIX}[A-Z0-9_]+)=", text, re.MULTILINE))
    assert SETTINGS - listed == set(), "missing from deploy/env.example"
    assert listed - SETTINGS == set(), "in deploy/env.example but read by no code"
    active = dict(re.findall(rf"^({PREFIX}[A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    assert active["DIANDIAN_ENV"] == "production" and len(active["DIANDIAN_WECHATPAY_APIV3_KEY"].encode()) == 32


def test_every_setting_is_in_the_readme_table():
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(rf"`({PREFIX}[A-Z0-9_]+)`", row.split("|")[1])}
    assert SETTINGS - documented == set(), "missing from the README's settings table"


def _same_as_default(name: str, shown: str) -> bool:
    default = {f.name: f.default for f in dataclasses.fields(Settings)}[name]
    if isinstance(default, bool):
        return shown == ("1" if default else "0")
    if isinstance(default, int | float):
        return float(shown) == default
    return shown == default


def test_the_defaults_in_the_readme_and_env_example_are_the_code_s():
    """A default the README's table gives literally (`value`, or `a` · `b` for `X` · `Y`; "empty"), and
    a commented ``# DIANDIAN_X=value`` line of env.example ("a commented line shows the default"), is
    Settings' own default."""
    fields = {f.name for f in dataclasses.fields(Settings)} - {"extra"}
    checked = 0
    for row in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if not row.startswith(f"| `{PREFIX}"):
            continue
        names = re.findall(rf"`{PREFIX}([A-Z0-9_]+)`", row.split("|")[1])
        cell = row.split("|")[2].strip()
        shown = [""] * len(names) if cell == "empty" else [value.strip() for value in cell.split("·")]
        if len(shown) != len(names) or not all(re.fullmatch(r"`[^`]*`|", value) for value in shown):
            continue  # described, not given ("the sandbox app", "cores (at least 2)")
        for name, value in zip(names, shown, strict=True):
            if name in fields:
                assert _same_as_default(name, value.strip("`")), f"README: {PREFIX}{name} {value}"
                checked += 1
    for name, value in re.findall(rf"^#\s*{PREFIX}([A-Z0-9_]+)=(\S*)", (DEPLOY / "env.example").read_text(
            encoding="utf-8"), re.MULTILINE):
        if name in fields:
            assert _same_as_default(name, value), f"env.example: {PREFIX}{name}={value}"
            checked += 1
    assert checked > 50


def test_compose_names_the_services_and_the_migration():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"app", "worker", "postgres", "redis", "nginx", "migrate"} <= set(services)
    assert services["migrate"]["command"] == ["flask", "--app", "app:create_app", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("app", "worker", "outbox"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["environment"]["DIANDIAN_ENV"] == "production"
        assert services[name]["environment"]["DIANDIAN_JOBS"] == "workers"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / services[name]["build"]["context"] / services[name]["build"]["dockerfile"]).is_file()
    assert services["app"]["command"] == ["gunicorn", "-c", "deploy/gunicorn.conf.py", "app:create_app()"]
    assert services["app"]["environment"]["DIANDIAN_TRUSTED_PROXIES"] == "1"
    assert services["worker"]["command"][-3:] == ["worker", "-q", "inbox"]
    assert services["outbox"]["command"][-3:] == ["worker", "-q", "default"]
    assert services["stream"]["environment"]["DIANDIAN_WORKER_CLASS"] == "gevent"
    assert services["stream"]["environment"]["DIANDIAN_BIND"].endswith(":8001")
    assert services["notify"]["command"] == services["app"]["command"]
    assert services["notify"]["environment"]["DIANDIAN_BIND"].endswith(":8002")
    assert "notify" in services["nginx"]["depends_on"]
    assert services["jobs"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["postgres"]["image"].startswith("postgres:") and services["redis"]["image"].startswith("redis:")
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in services["nginx"]["volumes"]}
    assert (DEPLOY / mounts["./nginx/diandian.conf"]).parent.name == "conf.d"
    assert (DEPLOY / "nginx" / "diandian.conf").is_file()


def nginx_site(tmp_path) -> list[dict]:
    """The site parsed by crossplane inside an http block (where conf.d files are included), with
    nginx's directive and context checks; returns the site file's directives."""
    main = tmp_path / "nginx.conf"
    site = DEPLOY / "nginx" / "diandian.conf"
    main.write_text(f"events {{}}\nhttp {{\n    include {site};\n}}\n")
    parsed = crossplane.parse(str(main))
    assert parsed["status"] == "ok", parsed["errors"]
    [config] = [c for c in parsed["config"] if c["file"] == str(site)]
    return config["parsed"]


def find(block: list[dict], directive: str, *args: str) -> list[dict]:
    return [d for d in block if d["directive"] == directive and tuple(d["args"][:len(args)]) == args]


def size_in_bytes(text: str) -> int:
    units = {"k": 1024, "m": 1024 ** 2}
    return int(text[:-1]) * units[text[-1].lower()] if text[-1].lower() in units else int(text)


def test_the_nginx_site(tmp_path, app):
    site = nginx_site(tmp_path)
    [tls] = [s for s in find(site, "server") if find(s["block"], "listen", "443")]
    server = tls["block"]
    assert "ssl" in find(server, "listen", "443")[0]["args"]
    assert find(server, "ssl_certificate") and find(server, "ssl_certificate_key")
    [limit] = find(server, "client_max_body_size")
    assert size_in_bytes(limit["args"][0]) == Settings().MAX_CONTENT_LENGTH == app.config["MAX_CONTENT_LENGTH"]
    # the headers werkzeug's ProxyFix believes (x_for, x_proto, x_host), set by nginx itself
    headers = {d["args"][0]: d["args"][1] for d in find(server, "proxy_set_header")}
    assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert headers["X-Forwarded-Proto"] == "$scheme" and headers["X-Forwarded-Host"] == "$host"
    assert headers["Host"] == "$host" and headers["X-Request-ID"] == "$request_id"
    # WeChat Pay's notify route, as the app serves it, falls in a location passed through unbuffered
    [notify_rule] = [r.rule for r in app.url_map.iter_rules() if r.endpoint == "wechatpay_notify.wechatpay_notify"]
    [notify] = [d for d in find(server, "location", "^~") if notify_rule.startswith(d["args"][1])]
    inside = notify["block"]
    assert find(inside, "proxy_buffering", "off") and find(inside, "proxy_request_buffering", "off")
    # on a gunicorn of its own, the app as the backup
    notify_upstream = find(inside, "proxy_pass")[0]["args"][0].removeprefix("http://")
    [notify_servers] = find(site, "upstream", notify_upstream)
    assert find(notify_servers["block"], "server", "notify:8002")
    assert find(notify_servers["block"], "server", "app:8000", "backup")
    # the big screen's event stream, as the app serves it, goes unbuffered to the gevent instance
    [stream_rule] = [r.rule for r in app.url_map.iter_rules() if r.rule.endswith("/events") and "screen" in r.rule]
    [stream] = [d for d in find(server, "location", "~") if re.fullmatch(d["args"][1], "/screen/cdcnf21/events")]
    assert stream_rule == "/screen/<string:key>/events" and find(stream["block"], "proxy_buffering", "off")
    stream_upstream = find(stream["block"], "proxy_pass")[0]["args"][0].removeprefix("http://")
    [stream_server] = find(site, "upstream", stream_upstream)
    assert find(stream_server["block"], "server", "stream:8001")
    timeout = find(stream["block"], "proxy_read_timeout")[0]["args"][0]
    assert int(timeout.removesuffix("s")) > Settings().SCREEN_STREAM_SECONDS
    [metrics] = find(server, "location", "=", "/metrics")
    assert find(metrics["block"], "return", "404")  # Prometheus scrapes the app, not through nginx
    [root] = find(server, "location", "/")
    upstream = root["block"][0]["args"][0].removeprefix("http://")
    assert find(site, "upstream", upstream)
    # overload: the guest API's requests at once are limited; past it, a 503 in the API's envelope
    [limit] = find(root["block"], "limit_conn")
    [zone] = find(site, "limit_conn_zone")
    assert zone["args"][1].startswith(f"zone={limit['args'][0]}:") and int(limit["args"][1]) > 0
    assert find(root["block"], "limit_conn_status", "503") and find(server, "error_page", "503", "=", "@overloaded")
    [overloaded] = find(server, "location", "@overloaded")
    [answer] = find(overloaded["block"], "return", "503")
    envelope = json.loads(answer["args"][1].replace("$request_id", "0123abcd"))
    assert set(envelope["error"]) == {"code", "message", "details", "request_id"}
    assert envelope["error"]["code"] == "service.overloaded" and envelope["error"]["request_id"] == "0123abcd"
    assert find(overloaded["block"], "default_type", "application/json")
    assert find(overloaded["block"], "add_header", "Retry-After")
    for other in (notify, stream):  # WeChat Pay and the big screens are never turned away by it
        assert not find(other["block"], "limit_conn")
    [plain] = [s for s in find(site, "server") if find(s["block"], "listen", "80")]
    assert any(find(loc["block"], "return", "301") for loc in find(plain["block"], "location", "/"))


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_dockerfile_runs_as_a_user_with_the_cjk_font():
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [value for kind, value in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    runs = " ".join(value for kind, value in steps if kind == "RUN")
    assert "useradd" in runs and "weblate" in runs and "cjk_font_path" in runs and "font_covers" in runs
    assert any("weblate-fonts" in dependency for dependency in _dependencies())  # the font's package
    [cmd] = [value for kind, value in steps if kind == "CMD"]
    assert "gunicorn" in cmd and "deploy/gunicorn.conf.py" in cmd and "upgrade" not in cmd
    for kind, value in steps:
        if kind == "COPY":
            *sources, _ = shlex.split(value)
            assert all((ROOT / source).exists() for source in sources), value


def test_the_dockerfile_python_steps_run():
    """The image's inline Python (reading pyproject's dependencies, proving the font covers Chinese)
    runs here as it would in the build."""
    runs = " ".join(value for kind, value in dockerfile_instructions() if kind == "RUN")
    snippets = [code for _, code in re.findall(r"""python -c (["'])(.*?)\1""", runs)]
    outputs = []
    for snippet in snippets:
        done = subprocess.run([sys.executable, "-c", snippet], check=False, cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, (snippet, done.stderr)
        outputs.append(done.stdout)
    requirements, font_dir, font_check = outputs
    assert (ROOT / font_dir.strip()).is_dir() and font_dir.strip().endswith("weblate_fonts")
    assert requirements.split() == _dependencies() and font_check == ""


def _dependencies() -> list[str]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]


@pytest.mark.parametrize(("unit", "command"), [
    ("diandian.service", "gunicorn -c deploy/gunicorn.conf.py app:create_app()"),
    ("diandian-stream.service", "gunicorn -c deploy/gunicorn.conf.py app:create_app()"),
    ("diandian-notify.service", "gunicorn -c deploy/gunicorn.conf.py app:create_app()"),
    ("diandian-worker.service", "flask --app app:create_app worker -q inbox"),
    ("diandian-outbox.service", "flask --app app:create_app worker -q default"),
    ("diandian-migrate.service", "flask --app app:create_app db upgrade"),
    ("diandian-payment-jobs.service", "flask --app app:create_app reconcile-payments --older-than-minutes 10"),
    ("diandian-purge.service", "flask --app app:create_app pii purge"),
])
def test_the_systemd_units(unit, command):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / "systemd" / unit, encoding="utf-8")
    service = parser["Service"]
    assert service["User"] not in {"root", "0"} and service["EnvironmentFile"] == "/etc/diandian/env"
    assert service["ExecStart"].endswith(command) and service["WorkingDirectory"] == "/srv/diandian"
    assert (service.get("Type") == "oneshot") == (unit in ONE_SHOT)
    assert "Nice" not in service  # every lane at the app's priority (decision 0015, amended 2026-12-06)


ONE_SHOT = {"diandian-migrate.service", "diandian-payment-jobs.service", "diandian-purge.service"}


def test_env_example_sets_nothing_a_unit_sets_for_itself():
    """/etc/diandian/env (from env.example) overrides a unit's own ``Environment=`` (systemd reads
    EnvironmentFile= last), so a setting both name would make e.g. every gunicorn instance bind 8000."""
    active = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (DEPLOY / "env.example").read_text(encoding="utf-8"),
                             re.MULTILINE))
    for unit in (DEPLOY / "systemd").glob("*.service"):
        own = dict(re.findall(r"^Environment=([A-Z][A-Z0-9_]*)=(.*)$", unit.read_text(encoding="utf-8"), re.MULTILINE))
        assert {name: value for name, value in own.items() if active.get(name, value) != value} == {}, unit.name


def test_every_one_shot_job_but_the_migration_has_a_timer_and_its_commands_exist():
    """The timers start units that exist, and every command a unit runs is one the CLI has."""
    from app import create_app

    commands = create_app({"TESTING": True}).cli.list_commands(None)
    for unit in sorted(ONE_SHOT - {"diandian-migrate.service"}):
        timer = configparser.ConfigParser(strict=False, interpolation=None)
        timer.read(DEPLOY / "systemd" / unit.replace(".service", ".timer"), encoding="utf-8")
        assert timer["Timer"].get("OnCalendar") or timer["Timer"].get("OnUnitActiveSec"), unit
        assert timer["Install"]["WantedBy"] == "timers.target"
        for line in (DEPLOY / "systemd" / unit).read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                assert line.split("app:create_app ")[1].split()[0] in commands, line


def test_the_compose_jobs_loop_runs_the_payment_jobs_each_minute_and_the_purge_daily():
    """The `jobs` service's shell loop, run by sh with `flask` and `sleep` played: three minutes."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    shell, flag, script = compose["services"]["jobs"]["command"]
    script = script.replace("$$", "$")  # compose's escape for a literal $
    played = 'flask() { echo "$3 $4"; }; sleep() { [ "$n" -ge 3 ] && exit 0; }; ' + script
    ran = subprocess.run([shell, flag, played], capture_output=True, text=True, timeout=10, check=True)
    lines = ran.stdout.split()
    assert ran.stdout.count("expire-orders") == 3 and ran.stdout.count("reconcile-payments") == 3
    assert ran.stdout.count("pii purge") == 1 and lines[:2] == ["expire-orders", "reconcile-payments"]
