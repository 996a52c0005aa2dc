"""deploy/audit_dependencies.py (make lint): a known vulnerability fails; an unreachable advisory
service is said loudly and passes, or fails under AUDIT_STRICT=1."""
from __future__ import annotations

import runpy

import pytest

from tests.conftest import ROOT

judge = runpy.run_path(str(ROOT / "deploy" / "audit_dependencies.py"))["judge"]
CLEAN = {"name": "flask", "version": "3.1.3", "vulns": []}
VULNERABLE = {"name": "jinja2", "version": "2.10", "vulns": [{"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"]}]}
UNREACHABLE = {"name": "redis", "skip_reason": "Dependency not found on PyPI and could not be audited: redis (8.1)"}


@pytest.fixture(params=["", "1"], ids=["tolerant", "strict"])
def strict(request, monkeypatch) -> bool:
    monkeypatch.setenv("AUDIT_STRICT", request.param)
    return request.param == "1"


def test_a_known_vulnerability_fails(strict):
    code, lines = judge({"dependencies": [CLEAN, VULNERABLE, UNREACHABLE]})
    assert code == 1 and "jinja2 2.10: PYSEC-2019-217 (fixed in 2.10.1)" in lines[0]


def test_nothing_audited_is_said_not_hidden(strict):
    code, lines = judge({"dependencies": [UNREACHABLE, {**UNREACHABLE, "name": "rq"}]})
    assert code == (2 if strict else 0) and "NOT AUDITED" in lines[0] and "any of 2 packages" in lines[0]
    code, lines = judge(None, "ConnectionError: Max retries exceeded")
    assert code == (2 if strict else 0) and "NOT AUDITED" in lines[0] and "ConnectionError" in lines[0]


def test_partly_audited_names_what_was_not(strict):
    code, lines = judge({"dependencies": [CLEAN, UNREACHABLE]})
    assert code == (2 if strict else 0) and lines == [("pip-audit: no known vulnerability in 1 packages; "
                                                      "1 NOT audited: redis")]


def test_clean(strict):
    assert judge({"dependencies": [CLEAN]}) == (0, ["pip-audit: no known vulnerability in 1 packages"])


def test_make_lint_runs_ruff_and_the_audit():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "ruff check ." in recipe and "$(PY) deploy/audit_dependencies.py" in recipe


def test_the_venv_holds_no_setuptools_with_a_known_vulnerability():
    """Every Python 3.11 venv is seeded with setuptools 65.5.0 (CVE-2022-40897, CVE-2024-6345,
    CVE-2025-47273, fixed by 78.1.1); pyproject.toml's floor replaces it, in the image too."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.version import Version

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [floor] = [Requirement(text) for text in dependencies if Requirement(text).name == "setuptools"]
    assert Version("78.1.1") in floor.specifier and Version("65.5.0") not in floor.specifier
    assert Version(version("setuptools")) in floor.specifier


# -- the offline audit against deploy/advisories.json (the PyPA advisory database, committed) ---------------

AUDIT = runpy.run_path(str(ROOT / "deploy" / "audit_dependencies.py"))
REFRESH = runpy.run_path(str(ROOT / "deploy" / "refresh_advisories.py"))
SNAPSHOT, SNAPSHOT_ERROR = AUDIT["load_snapshot"]()
in_range, is_affected, audit_offline = AUDIT["in_range"], AUDIT["is_affected"], AUDIT["audit_offline"]


def skipped(name: str, version: str) -> dict:
    """A package as pip-audit reports it when PyPI's JSON API does not answer."""
    return {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} ({version})"}


def advisory(*ranges: list[dict], versions=(), id="PYSEC-0000-1") -> dict:
    return {"id": id, "aliases": [], "fixed": [], "versions": list(versions),
            "ranges": [{"type": "ECOSYSTEM", "events": list(r)} for r in ranges]}


def affected(version: str, item: dict) -> bool:
    from packaging.version import Version
    return is_affected(Version(version), item)


def test_the_committed_snapshot_loads():
    assert SNAPSHOT is not None, SNAPSHOT_ERROR
    assert SNAPSHOT["source"] == "pypa/advisory-database" and len(SNAPSHOT["commit"]) == 40
    assert (ROOT / "deploy" / "advisories.json").stat().st_size < 300_000


def test_osv_introduced_and_fixed():
    item = advisory([{"introduced": "1.0"}, {"fixed": "1.2.3"}])
    assert [affected(v, item) for v in ("0.9", "1.0", "1.0.post1", "1.2.3rc1", "1.2.3", "2.0")] == [
        False, True, True, True, False, False]


def test_osv_introduced_zero_means_every_version():
    item = advisory([{"introduced": "0"}, {"fixed": "2.10.1"}])
    assert affected("0.0.1", item) and affected("0.1.dev0", item) and affected("2.10", item)
    assert not affected("2.10.1", item)
    assert affected("99", advisory([{"introduced": "0"}]))  # no fix yet: every version


def test_osv_last_affected_includes_that_version():
    item = advisory([{"introduced": "1.0"}, {"last_affected": "1.4"}])
    assert [affected(v, item) for v in ("0.9", "1.0", "1.4", "1.4.post1", "1.5")] == [
        False, True, True, False, False]


def test_osv_several_pairs_in_one_range_and_several_ranges():
    """Events are sorted by version first: the last one at or below the version decides."""
    item = advisory([{"fixed": "2.3.2"}, {"introduced": "2.3.0"}, {"fixed": "2.2.5"}, {"introduced": "0"}])
    assert [affected(v, item) for v in ("1.0", "2.2.5", "2.2.9", "2.3.0", "2.3.1", "2.3.2", "3.0")] == [
        True, False, False, True, True, False, False]
    item = advisory([{"introduced": "1.0"}, {"fixed": "1.1"}], [{"introduced": "3.0"}, {"last_affected": "3.2"}])
    assert [affected(v, item) for v in ("0.5", "1.0", "1.1", "2.0", "3.1", "3.2", "3.3")] == [
        False, True, False, False, True, True, False]


def test_osv_explicit_versions_are_affected_too():
    item = advisory([{"introduced": "2.0"}, {"fixed": "2.1"}], versions=["1.5", "1.6.0"])
    assert affected("1.5", item) and affected("1.6", item) and affected("2.0.1", item)  # 1.6 == 1.6.0
    assert not affected("1.5.1", item) and not affected("2.1", item)
    only = advisory(versions=["0.3", "not-a-version"])
    assert affected("0.3", only) and not affected("0.4", only)


def test_unparseable_versions_are_said_not_audited_not_a_crash():
    snapshot = {"advisories": {"a": [advisory([{"introduced": "0"}, {"fixed": "1.0"}])],
                               "b": [advisory([{"introduced": "bogus!"}, {"fixed": "2"}], id="PYSEC-B"),
                                     advisory([{"introduced": "0"}, {"fixed": "9"}], id="PYSEC-C")]}}
    vulnerable, audited, not_audited = audit_offline({"a": "1.0-what?", "b": "1.5", "c": "1.0"}, snapshot)
    assert [(n, v, [h["id"] for h in hits]) for n, v, hits in vulnerable] == [("b", "1.5", ["PYSEC-C"])]
    assert audited == 0 and [n for n, _ in not_audited] == ["a", "b", "c"]
    reasons = dict(not_audited)
    assert "does not parse" in reasons["a"] and "PYSEC-B" in reasons["b"] and reasons["c"] == "not in the snapshot"


@pytest.mark.parametrize(("name", "version", "advisory_id", "fix"), [
    ("jinja2", "2.10", "PYSEC-2019-217", "2.10.1"),
    ("flask", "0.12", "PYSEC-2018-66", "0.12.3"),
    ("flask", "2.3.1", "PYSEC-2023-62", "2.2.5, 2.3.2"),
])
def test_a_known_vulnerable_old_version_is_caught_offline(strict, name, version, advisory_id, fix):
    report = {"dependencies": [skipped("itsdangerous", "2.2.0"), skipped(name, version)]}
    code, lines = judge(report, snapshot=SNAPSHOT, installed={})
    line = next(line for line in lines if line.startswith(f"pip-audit: {name} {version} (offline): "))
    assert code == 1 and f"{advisory_id} (fixed in {fix}; CVE-" in line
    assert "1 vulnerable (0 live, 1 offline)" in lines[-1]


def test_a_vulnerability_found_live_and_one_offline_both_fail(strict):
    code, lines = judge({"dependencies": [CLEAN, VULNERABLE, skipped("flask", "0.12")]}, snapshot=SNAPSHOT)
    assert code == 1 and lines[0].startswith("pip-audit: jinja2 2.10: PYSEC-2019-217 (fixed in 2.10.1)")
    assert lines[1].startswith("pip-audit: flask 0.12 (offline): PYSEC-2018-66")
    assert "2 packages audited live" in lines[2] and "2 vulnerable (1 live, 1 offline)" in lines[2]


def test_the_output_says_which_way_and_the_snapshot_date(strict):
    import datetime as dt
    date = dt.date.fromisoformat(SNAPSHOT["date"])
    report = {"dependencies": [skipped("flask", "3.1.3"), skipped("jinja2", "3.1.6")]}
    fresh = judge(report, snapshot=SNAPSHOT, today=date + dt.timedelta(days=10))
    assert fresh == (0, [(f"pip-audit: advisory service unreachable; 2 packages audited offline against "
                          f"pypa/advisory-database of {SNAPSHOT['date']} (10 days old: advisories published "
                          "since are not known): no known vulnerability")])
    code, lines = judge(report, snapshot=SNAPSHOT, today=date + dt.timedelta(days=400))
    assert code == (2 if strict else 0) and f"of {SNAPSHOT['date']} (stale, 400 days old" in lines[0]
    assert "refresh_advisories.py" in lines[1] and ("AUDIT_STRICT=1 fails" in lines[1]) == strict
    code, lines = judge({"dependencies": [CLEAN, skipped("jinja2", "3.1.6")]}, snapshot=SNAPSHOT,
                        today=date + dt.timedelta(days=10))
    assert code == 0 and lines[0].startswith("pip-audit: 1 packages audited live; advisory service unreachable; "
                                             "1 packages audited offline against pypa/advisory-database of ")


def test_what_the_snapshot_does_not_cover_is_not_audited(strict):
    import datetime as dt
    today = dt.date.fromisoformat(SNAPSHOT["date"]) + dt.timedelta(days=1)
    code, lines = judge({"dependencies": [skipped("flask", "3.1.3"), skipped("left-pad", "1.0")]},
                        snapshot=SNAPSHOT, today=today)
    assert code == (2 if strict else 0)
    assert lines[-1].endswith("no known vulnerability; 1 NOT audited: left-pad (not in the snapshot)")


def test_pip_audit_failing_audits_every_installed_package_offline(strict):
    import datetime as dt
    today = dt.date.fromisoformat(SNAPSHOT["date"]) + dt.timedelta(days=1)
    code, lines = judge(None, "ConnectionError: boom", snapshot=SNAPSHOT, today=today,
                        installed={"flask": "0.12", "jinja2": "3.1.6"})
    assert code == 1 and "flask 0.12 (offline)" in lines[0]
    assert "pip-audit failed (ConnectionError: boom); 2 packages audited offline" in lines[-1]


def test_a_missing_or_corrupt_snapshot_falls_back_to_not_audited(strict, tmp_path):
    assert AUDIT["load_snapshot"](tmp_path / "absent.json")[0] is None
    corrupt = tmp_path / "advisories.json"
    for text in ("{", '{"advisories": {"x": [{"id": 1}]}, "source": "s", "commit": "c", "date": "2024-10-10"}',
                 '{"advisories": {}, "source": "s", "commit": "c", "date": "yesterday"}'):
        corrupt.write_text(text)
        snapshot, error = AUDIT["load_snapshot"](corrupt)
        assert snapshot is None and error.startswith("advisories.json: ")
        code, lines = judge({"dependencies": [UNREACHABLE]}, snapshot=None, snapshot_error=error)
        assert code == (2 if strict else 0) and "NOT AUDITED" in lines[0]
        assert lines[1] == f"pip-audit: no offline audit either: {error}"


def test_the_snapshot_covers_every_dependency_the_project_declares():
    """deploy/refresh_advisories.py writes every package of the venv. What pyproject.toml names (with its extras)
    must be in it; a transitive package a fresh install pulls in later is said NOT audited by the audit itself
    (test_what_the_snapshot_does_not_cover_is_not_audited), so this test does not depend on the resolver's day."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    missing = sorted({canonicalize_name(Requirement(r).name) for r in declared} - set(SNAPSHOT["advisories"]))
    assert missing == [], (f"not in deploy/advisories.json: {missing}; run .venv/bin/python "
                           "deploy/refresh_advisories.py PATH-TO-pypa/advisory-database")
    assert AUDIT["this_project"]() == "diandian" and "diandian" not in SNAPSHOT["advisories"]


def test_the_committed_snapshot_has_no_withdrawn_advisory():
    """PYSEC-2023-73 (redis) was withdrawn in pypa/advisory-database."""
    ids = {a["id"] for items in SNAPSHOT["advisories"].values() for a in items}
    assert "PYSEC-2019-217" in ids and "PYSEC-2023-73" not in ids


def test_refresh_reads_a_git_dir_and_keeps_what_matters(tmp_path):
    import json
    import subprocess

    def advisory_yaml(id, name, extra="", ecosystem="PyPI"):
        return (f"id: {id}\n{extra}affected:\n- package:\n    name: {name}\n    ecosystem: {ecosystem}\n"
                "  ranges:\n  - type: GIT\n    repo: https://example.org/x\n    events:\n    - introduced: '0'\n"
                "    - fixed: abcdef\n  - type: ECOSYSTEM\n    events:\n    - introduced: '0'\n    - fixed: 2.0.1\n"
                "    - introduced: '3.0'\n    - last_affected: '3.1'\n  versions:\n  - '1.0'\naliases:\n- CVE-1\n")
    repo = tmp_path / "advisory-database"
    files = {"vulns/flask/PYSEC-1.yaml": advisory_yaml("PYSEC-1", "Flask"),
             "vulns/flask/PYSEC-2.yaml": advisory_yaml("PYSEC-2", "flask", "withdrawn: '2024-01-01T00:00:00Z'\n"),
             "vulns/flask/GO-1.yaml": advisory_yaml("GO-1", "flask", ecosystem="Go"),
             "vulns/left-pad/PYSEC-3.yaml": advisory_yaml("PYSEC-3", "left-pad")}
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_COMMITTER_DATE": "2024-10-10T17:35:05Z", "HOME": str(tmp_path)}
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "advisories"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    out = tmp_path / "advisories.json"
    assert REFRESH["main"]([str(repo), "--out", str(out)]) == 0
    snapshot = json.loads(out.read_text())
    assert snapshot["date"] == "2024-10-10" and snapshot["source"] == "pypa/advisory-database"
    assert snapshot["advisories"]["flask"] == [{
        "id": "PYSEC-1", "aliases": ["CVE-1"], "fixed": ["2.0.1"], "versions": ["1.0"],
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0.1"},
                                                    {"introduced": "3.0"}, {"last_affected": "3.1"}]}]}]
    assert "left-pad" not in snapshot["advisories"]  # not installed
    assert snapshot["advisories"]["pytest"] == [] and "diandian" not in snapshot["advisories"]
    assert AUDIT["check_snapshot"](snapshot) is None
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True, capture_output=True)
    again = tmp_path / "again.json"
    assert REFRESH["main"]([str(bare), "--out", str(again)]) == 0 and again.read_text() == out.read_text()
