"""Write deploy/advisories.json: the PyPA advisory database's advisories for this virtualenv's packages.

    .venv/bin/python deploy/refresh_advisories.py PATH    # a clone or a bare git dir of pypa/advisory-database

deploy/audit_dependencies.py audits against this file when pip-audit cannot reach its advisory service (CI and
the build machines cannot), so it is committed, and refreshed by hand where a copy of
https://github.com/pypa/advisory-database is at hand. It reads the advisories (OSV YAML under vulns/) of HEAD
and keeps those affecting a distribution installed where it runs (importlib.metadata: run it with the venv's
python, after installing the test and dev extras), plus the packages the file already covered; withdrawn
advisories, other ecosystems and GIT ranges are left out. Every covered package is a key, with [] when it has
no advisory, so that the audit can tell "no known vulnerability" from "not covered".
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_dependencies import EVENTS, installed_versions  # the audit's own reading of the venv

OUT = Path(__file__).resolve().parent / "advisories.json"
RANGE_TYPES = {"ECOSYSTEM", "SEMVER"}


def git(git_dir: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], input=data, capture_output=True,
                          check=True, env={**os.environ, "TZ": "UTC"}).stdout


def git_dir_of(path: Path) -> Path:
    if (path / ".git").exists():
        return path / ".git"
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    raise SystemExit(f"{path}: neither a clone nor a bare git dir of pypa/advisory-database")


def read_advisories(git_dir: Path) -> list[dict]:
    """Every advisory of HEAD:vulns/, parsed."""
    listing = git(git_dir, "ls-tree", "-r", "HEAD", "vulns/").decode()
    blobs = [line.split()[2] for line in listing.splitlines() if line.endswith((".yaml", ".yml"))]
    if not blobs:
        raise SystemExit(f"{git_dir}: no advisory under vulns/ at HEAD")
    out = git(git_dir, "cat-file", "--batch", data="".join(f"{b}\n" for b in blobs).encode())
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    advisories, at = [], 0
    for _ in blobs:
        header_end = out.index(b"\n", at)
        size = int(out[at:header_end].split()[2])
        body = out[header_end + 1:header_end + 1 + size]
        at = header_end + 1 + size + 1
        advisories.append(yaml.load(body, Loader=loader))  # a safe loader
    return advisories


def sort_key(text: str) -> tuple:
    try:
        return (0, Version(text), "")
    except InvalidVersion:
        return (1, Version("0"), text)


def entries(advisory: dict, wanted: set[str]) -> dict[str, dict]:
    """{package: the compact entry} for each wanted PyPI package the advisory affects."""
    found: dict[str, dict] = {}
    for affected in advisory.get("affected") or []:
        package = affected.get("package") or {}
        if package.get("ecosystem") != "PyPI" or canonicalize_name(package.get("name", "")) not in wanted:
            continue
        entry = found.setdefault(canonicalize_name(package["name"]), {
            "id": advisory["id"], "aliases": sorted(advisory.get("aliases") or []), "ranges": [], "versions": []})
        for r in affected.get("ranges") or []:
            if r.get("type") in RANGE_TYPES:
                events = [{k: str(v)} for e in r.get("events") or [] for k, v in e.items() if k in EVENTS]
                entry["ranges"].append({"type": r["type"], "events": events})
        entry["versions"] += [str(v) for v in affected.get("versions") or []]
    for entry in found.values():
        entry["versions"] = sorted(set(entry["versions"]), key=sort_key)
        entry["fixed"] = sorted({e["fixed"] for r in entry["ranges"] for e in r["events"] if "fixed" in e},
                                key=sort_key)
    return found


def write(path: Path, snapshot: dict) -> None:
    """Sorted keys, one line per advisory: small, and its diffs readable."""
    lines = []
    for name in sorted(snapshot["advisories"]):
        items = [json.dumps(a, sort_keys=True, separators=(",", ":")) for a in snapshot["advisories"][name]]
        lines.append(f"{json.dumps(name)}:[" + ("\n" + ",\n".join(items) if items else "") + "]")
    head = {k: v for k, v in sorted(snapshot.items()) if k != "advisories"}
    path.write_text('{"advisories":{\n' + ",\n".join(lines) + "\n},\n"
                    + json.dumps(head, sort_keys=True, separators=(",", ":"))[1:] + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="a clone or a bare git dir of pypa/advisory-database")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if sys.prefix == sys.base_prefix:
        raise SystemExit("run this with the virtualenv's python (.venv/bin/python): it covers what is installed")
    git_dir = git_dir_of(args.path)
    commit = git(git_dir, "rev-parse", "HEAD").decode().strip()
    date = git(git_dir, "show", "-s", "--format=%cd", "--date=format-local:%Y-%m-%d", "HEAD").decode().strip()  # UTC
    if not re.fullmatch(r"\d{4}-\d\d-\d\d", date):
        raise SystemExit(f"unexpected commit date {date!r}")
    wanted = set(installed_versions())
    try:
        wanted |= set(json.loads(args.out.read_text(encoding="utf-8"))["advisories"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found: dict[str, list[dict]] = {name: [] for name in wanted}
    withdrawn = 0
    for advisory in read_advisories(git_dir):
        if not isinstance(advisory, dict) or "id" not in advisory:
            continue
        if advisory.get("withdrawn"):
            withdrawn += 1
            continue
        for name, entry in entries(advisory, wanted).items():
            found[name].append(entry)
    for items in found.values():
        items.sort(key=lambda a: a["id"])
    write(args.out, {"source": "pypa/advisory-database", "commit": commit, "date": date, "advisories": found})
    count = sum(map(len, found.values()))
    print(f"{args.out}: {count} advisories for {len(found)} packages ({withdrawn} withdrawn skipped), "
          f"pypa/advisory-database {commit[:12]} of {date}, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
