"""`make lint`'s dependency audit: pip-audit over this virtualenv against PyPI's advisory data.

Fails (exit 1) when a known vulnerability is found. When the advisory service cannot be reached
(no network, or a PyPI mirror without the JSON API, as on the project's build machines), pip-audit
would report "No known vulnerabilities found" with every package silently skipped: this says
instead, loudly, how many packages were NOT audited, and passes, unless AUDIT_STRICT=1 (then exit 2).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

COMMAND = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off", "--skip-editable",
           "--timeout", "10"]


def judge(report: dict | None, error: str = "") -> tuple[int, list[str]]:
    """(exit code, lines to print) for pip-audit's JSON report (None: it produced none)."""
    strict = os.environ.get("AUDIT_STRICT") == "1"
    if report is None:
        return (2 if strict else 0), [f"pip-audit: NOT AUDITED, pip-audit failed: {error.strip()[-400:]}"]
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    audited = len(dependencies) - len(skipped)
    lines = [f"pip-audit: {d['name']} {d['version']}: " + ", ".join(
        f"{v['id']} (fixed in {', '.join(v.get('fix_versions') or ['no release yet'])})" for v in d["vulns"])
        for d in vulnerable]
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
        code, lines = judge(None, repr(exc))
    else:
        try:
            code, lines = judge(json.loads(done.stdout))
        except ValueError:
            code, lines = judge(None, done.stderr or done.stdout)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
