"""`make lint`'s dependency audit: pip-audit over this virtualenv, else an offline advisory snapshot.

pip-audit asks PyPI's advisory data about every installed distribution first, and a known vulnerability fails
(exit 1). When it cannot (no network, or a PyPI mirror without the JSON API, as on the project's build machines
and CI), pip-audit would report "No known vulnerabilities found" with every package silently skipped. The
packages it could not audit are audited instead against deploy/advisories.json: the PyPA advisory database
(https://github.com/pypa/advisory-database, OSV) at one commit, cut down to this virtualenv's packages by
deploy/refresh_advisories.py and committed. A known vulnerability found there fails (exit 1) just the same.
The output says which way each package was audited and of which date the snapshot is: it is stale by
construction, advisories published after it are not known.

A package the snapshot does not cover (installed since its last refresh), or whose version does not parse, is
said NOT audited; if the snapshot is missing or corrupt, every package pip-audit skipped is NOT audited, and
says so. The default passes then (exit 0). AUDIT_STRICT=1 fails (exit 2) when any package was NOT audited, and
also when a package was audited only against a snapshot more than MAX_SNAPSHOT_AGE_DAYS (90) old: a strict
audit must be about as current as the live one, and a quarter's worth of unknown advisories is already a lot
for a web stack. Refresh the snapshot (deploy/refresh_advisories.py) to pass strictly offline.

Offline semantics are OSV's: a version is affected if it is listed in an advisory's "versions", or falls in
one of its ECOSYSTEM/SEMVER ranges (events sorted by version, "introduced: 0" first: affected from an
introduced on, until a fixed, or past a last_affected), compared with packaging.version.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import distributions
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

COMMAND = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off", "--skip-editable",
           "--timeout", "10"]
ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "deploy" / "advisories.json"
MAX_SNAPSHOT_AGE_DAYS = 90
EVENTS = ("introduced", "fixed", "last_affected")
VERSION_IN_REASON = re.compile(r"\(([^()\s]+)\)\s*$")  # "... could not be audited: redis (8.1)"


# -- the snapshot ---------------------------------------------------------------------------------------------

def load_snapshot(path: Path = SNAPSHOT) -> tuple[dict | None, str]:
    """(the snapshot, "") or (None, why it cannot be used)."""
    try:
        snapshot = json.loads(path.read_text(encoding="utf-8"))
        check_snapshot(snapshot)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return None, f"{path.name}: {exc.__class__.__name__}: {exc}"[:300]
    return snapshot, ""


def check_snapshot(snapshot: dict) -> None:
    """Raises ValueError (or TypeError, KeyError) unless the snapshot is as refresh_advisories.py writes it."""
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("advisories"), dict):
        raise TypeError("no advisories")
    if not isinstance(snapshot["source"], str) or not isinstance(snapshot["commit"], str):
        raise TypeError("no source or commit")
    dt.date.fromisoformat(snapshot["date"])
    for name, advisories in snapshot["advisories"].items():
        for a in advisories:
            if not isinstance(a["id"], str) or not all(isinstance(v, str) for v in a["versions"] + a["fixed"]):
                raise ValueError(f"{name}: malformed advisory {str(a)[:80]}")
            for r in a["ranges"]:
                if not all(isinstance(e, dict) and len(e) == 1 and next(iter(e)) in EVENTS and
                           isinstance(next(iter(e.values())), str) for e in r["events"]):
                    raise ValueError(f"{name}: {a['id']}: malformed range {str(r)[:80]}")


def age_days(snapshot: dict, today: dt.date | None = None) -> int:
    return ((today or dt.date.today()) - dt.date.fromisoformat(snapshot["date"])).days


# -- OSV semantics --------------------------------------------------------------------------------------------

def in_range(version: Version, events: Iterable[dict]) -> bool:
    """OSV: sorted by version (introduced "0" first), the last event at or below `version` decides.
    Raises InvalidVersion when an event's version does not parse."""
    def key(event: dict) -> Version:
        (kind, value), = event.items()
        return Version("0") if kind == "introduced" and value == "0" else Version(value)

    affected = False
    for event in sorted(events, key=key):
        (kind, value), = event.items()
        if kind == "introduced" and (value == "0" or version >= Version(value)):
            affected = True
        elif ((kind == "fixed" and version >= Version(value))
              or (kind == "last_affected" and version > Version(value))):
            affected = False
    return affected


def listed(version: Version, versions: Iterable[str]) -> bool:
    for text in versions:
        try:
            if Version(text) == version:
                return True
        except InvalidVersion:
            if text == str(version):
                return True
    return False


def is_affected(version: Version, advisory: dict) -> bool:
    """Raises InvalidVersion when one of the advisory's range versions does not parse."""
    return listed(version, advisory["versions"]) or any(in_range(version, r["events"]) for r in advisory["ranges"])


def audit_offline(packages: dict[str, str], snapshot: dict) -> tuple[list[tuple[str, str, list[dict]]], int,
                                                                     list[tuple[str, str]]]:
    """([(name, version, advisories affecting it)], how many were audited, [(name, why NOT audited)])."""
    vulnerable, audited, not_audited = [], 0, []
    for name, text in sorted(packages.items()):
        advisories = snapshot["advisories"].get(canonicalize_name(name))
        if advisories is None:
            not_audited.append((name, "not in the snapshot"))
            continue
        try:
            version = Version(text)
        except InvalidVersion:
            not_audited.append((name, f"version {text!r} does not parse"))
            continue
        hits, unreadable = [], []
        for advisory in advisories:
            try:
                if is_affected(version, advisory):
                    hits.append(advisory)
            except InvalidVersion as exc:
                unreadable.append(f"{advisory['id']}: {exc}")
        if hits:
            vulnerable.append((name, text, hits))
        if unreadable:  # some advisories could not be judged: not audited, even when others hit
            not_audited.append((name, "; ".join(unreadable)))
        else:
            audited += 1
    return vulnerable, audited, not_audited


# -- the verdict ----------------------------------------------------------------------------------------------

@functools.cache
def this_project() -> str:
    try:
        return canonicalize_name(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"])
    except (OSError, ValueError, KeyError):
        return ""


def installed_versions() -> dict[str, str]:
    """{name: version} of every distribution of this interpreter, but this project itself."""
    found = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions() if d.metadata["Name"]}
    found.pop(this_project(), None)
    return found


def judge(report: dict | None, error: str = "", snapshot: dict | None = None, installed: dict | None = None,
          snapshot_error: str = "", today: dt.date | None = None) -> tuple[int, list[str]]:
    """(exit code, lines to print) for pip-audit's JSON report (None: it produced none). Without a snapshot,
    what pip-audit skipped is NOT audited; with one, it is audited offline: the versions of the skipped
    packages come from `installed` ({name: version}), else from pip-audit's skip reason; when pip-audit
    produced no report, every package of `installed` is audited offline."""
    strict = os.environ.get("AUDIT_STRICT") == "1"
    if snapshot is None or (report is None and not installed):
        code, lines = judge_live(report, error, strict)
        skipped = report is None or any(d.get("skip_reason") for d in report.get("dependencies", []))
        if snapshot_error and skipped and code != 1:
            lines.append(f"pip-audit: no offline audit either: {snapshot_error}")
        return code, lines
    installed = installed or {}
    if report is None:
        live, offline, why = [], dict(installed), f"pip-audit failed ({error.strip()[-200:]})"
    else:
        dependencies = report.get("dependencies", [])
        live = [d for d in dependencies if not d.get("skip_reason")]
        offline = {}
        for d in dependencies:
            if d.get("skip_reason") and canonicalize_name(d["name"]) != this_project():
                match = VERSION_IN_REASON.search(d["skip_reason"])
                offline[d["name"]] = d.get("version") or (match.group(1) if match else "") or installed.get(
                    canonicalize_name(d["name"]), "")
        why = "advisory service unreachable"
    vulnerable, audited, not_audited = audit_offline(offline, snapshot)
    days = age_days(snapshot, today)
    stale = days > MAX_SNAPSHOT_AGE_DAYS
    source = (f"{snapshot['source']} of {snapshot['date']} ({'stale, ' if stale else ''}{days} days old: "
              f"advisories published since are not known)")
    live_vulnerable = [d for d in live if d.get("vulns")]
    lines = live_lines(live_vulnerable)
    lines += [f"pip-audit: {name} {version} (offline): " + ", ".join(
        f"{a['id']} (fixed in {', '.join(a['fixed']) or 'no release known to the snapshot'}"
        + (f"; {', '.join(a['aliases'])})" if a["aliases"] else ")") for a in hits)
        for name, version, hits in vulnerable]
    parts = []
    if live:
        parts.append(f"{len(live)} packages audited live")
    if report is None or offline:
        parts.append(f"{why}; {audited} packages audited offline against {source}")
    verdict = ("no known vulnerability" if not (live_vulnerable or vulnerable) else
               f"{len(live_vulnerable) + len(vulnerable)} vulnerable "
               f"({len(live_vulnerable)} live, {len(vulnerable)} offline)")
    summary = f"pip-audit: {'; '.join(parts)}: {verdict}"
    if not_audited:
        summary += f"; {len(not_audited)} NOT audited: " + ", ".join(f"{n} ({r})" for n, r in not_audited)
    lines.append(summary)
    if live_vulnerable or vulnerable:
        return 1, lines
    if stale and audited:
        lines.append(f"pip-audit: the snapshot is more than {MAX_SNAPSHOT_AGE_DAYS} days old"
                     + (" (AUDIT_STRICT=1 fails)" if strict else "")
                     + "; refresh it where pypa/advisory-database can be cloned: "
                       ".venv/bin/python deploy/refresh_advisories.py PATH")
    failing = bool(not_audited) or (stale and audited > 0)
    return (2 if strict and failing else 0), lines


def live_lines(vulnerable: list[dict]) -> list[str]:
    """A line per package pip-audit found vulnerable: its advisories and the versions that fix them."""
    return [f"pip-audit: {d['name']} {d['version']}: " + ", ".join(
        f"{v['id']} (fixed in {', '.join(v.get('fix_versions') or ['no release yet'])})" for v in d["vulns"])
        for d in vulnerable]


def judge_live(report: dict | None, error: str, strict: bool) -> tuple[int, list[str]]:
    """The verdict on pip-audit's report alone: what it skipped is NOT audited."""
    if report is None:
        return (2 if strict else 0), [f"pip-audit: NOT AUDITED, pip-audit failed: {error.strip()[-400:]}"]
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    lines = live_lines(vulnerable)
    if vulnerable:
        return 1, [*lines, f"pip-audit: {len(vulnerable)} vulnerable of {audited} audited packages"]
    if skipped and not audited:
        return (2 if strict else 0), [
            (f"pip-audit: NOT AUDITED: the advisory service did not answer for any of {len(skipped)} packages "
            f"(first: {skipped[0]['skip_reason']}). Run `make lint` where PyPI's JSON API is reachable.")]
    if skipped:
        names = ", ".join(d["name"] for d in skipped)
        return (2 if strict else 0), [(f"pip-audit: no known vulnerability in {audited} packages; "
                                      f"{len(skipped)} NOT audited: {names}")]
    return 0, [f"pip-audit: no known vulnerability in {audited} packages"]


def main() -> int:
    try:
        done = subprocess.run(COMMAND, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report, error = None, repr(exc)
    else:
        try:
            report, error = json.loads(done.stdout), ""
        except ValueError:
            report, error = None, done.stderr or done.stdout
    needed = report is None or any(d.get("skip_reason") for d in report.get("dependencies", []))
    snapshot, snapshot_error = load_snapshot() if needed else (None, "")
    code, lines = judge(report, error, snapshot, installed_versions() if snapshot else None, snapshot_error)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
