"""The API reference builds without warnings (mkdocs --strict), when mkdocs is installed."""

import re
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


def test_every_export_is_listed_and_documented():
    """The package docstring lists each name of ``mor.__all__`` on a line of its own, and the
    API page renders each one."""
    import mor

    listed = set(re.findall(r"^(\w+) +-- ", mor.__doc__, flags=re.M))
    assert listed == set(mor.__all__)
    api = (ROOT / "docs" / "api.md").read_text()
    rendered = set(re.findall(r"^::: mor\.(\w+)", api, flags=re.M))
    assert set(mor.__all__) <= rendered
