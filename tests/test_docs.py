"""The API reference builds without warnings (mkdocs --strict), when mkdocs is installed."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    shutil.copy(ROOT / "README.md", ROOT / "docs" / "index.md")  # the front page, as `make docs`
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("mor.reduce", "mor.hankel_singular_values", "mor.distill", "ModalRecurrence"):
        assert name in api
