"""`qr` stands alone: a merchant gate imports it without the service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qr import bench

ROOT = Path(__file__).resolve().parents[2]


def test_importing_qr_loads_no_flask_no_database_no_ecard():
    probe = (
        "import sys, qr, qr.vectors, qr.bench, qr.device\n"
        "service = {'flask', 'werkzeug', 'sqlalchemy', 'ecard', 'psycopg'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in service)\n"
        "print(bad)\n"
        "raise SystemExit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_source_file_mentions_the_service():
    for path in (ROOT / "qr").glob("*.py"):
        source = path.read_text()
        for forbidden in ("import flask", "from flask", "sqlalchemy", "from ecard", "import ecard"):
            assert forbidden not in source, f"{path.name}: {forbidden}"


def test_bench_runs(capsys):
    bench.main(0.05)
    out = capsys.readouterr().out
    assert "qr.verify / raw verify" in out
    assert "ED1 verify, SM2 phone, new" in out and "ED1 device_code, ES256 phone" in out
