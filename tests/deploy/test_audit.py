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
