"""A process that only made the app has not imported what only migrations, drawings or receipts
use (issue 14: every process under 150 MB resident; alembic, Pillow, qrcode and fpdf2 are ~50 MB)."""
from __future__ import annotations

import json
import subprocess
import sys

from app import ROOT

ONLY_WHEN_USED = ("alembic", "mako", "pygments", "flask_migrate", "PIL", "qrcode", "fpdf", "fontTools")


def test_create_app_imports_none_of_the_modules_only_some_commands_need(tmp_path):
    script = (
        "import json, sys\n"
        "from app import create_app\n"
        f"create_app({{'ENV': 'testing', 'DATABASE_URL': 'sqlite:///{tmp_path}/lazy.sqlite3'}})\n"
        f"print(json.dumps([m for m in {list(ONLY_WHEN_USED)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
