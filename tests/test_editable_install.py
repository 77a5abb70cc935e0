"""README's ``pip install -e`` leaves the package visible to type checkers (issue #21).

setuptools' default editable install for a flat layout is an import-hook finder that mypy and
pyright cannot follow: mypy run outside the repository then reports ``asyncthrift`` as
import-not-found. ``[tool.setuptools] package-dir`` in pyproject.toml makes it a static .pth
instead. Checked the way a user would meet it: a fresh venv, pip's default invocation, mypy
on a user's file in another directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import asyncthrift

pytestmark = pytest.mark.slow

ROOT = Path(asyncthrift.__file__).resolve().parent.parent

USER_FILE = """\
import asyncthrift

reveal_type(asyncthrift.Thrift)
"""

# the dependencies are checked as Any: what is under test is finding asyncthrift itself
MYPY_INI = """\
[mypy]
[mypy-anthropic.*,httpx2.*,httpx.*,pydantic.*,redis.*,aiohttp.*,orjson.*,xxhash.*]
follow_imports = skip
"""


def _run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_mypy_outside_the_repository_sees_an_editable_install(tmp_path: Path) -> None:
    project = tmp_path / "project"  # a copy, so that the build writes nothing in the repo
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "asyncthrift",
        project / "asyncthrift",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", venv], tmp_path, 300)
    assert made.returncode == 0, made.stderr
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
    installed = _run([*pip, "-e", project], tmp_path, 600)  # README's invocation
    assert installed.returncode == 0, installed.stderr

    user = tmp_path / "user"  # outside the repository and outside the project
    user.mkdir()
    (user / "app.py").write_text(USER_FILE)
    (user / "mypy.ini").write_text(MYPY_INI)
    checked = _run(
        [python, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", user / ".mc", "app.py"],
        user,
        600,
    )
    out = checked.stdout + checked.stderr
    assert "import-not-found" not in out, out
    assert 'Revealed type is "def (api_key: str | None =' in out, out
    assert checked.returncode == 0, out

    # the console script pyproject.toml declares runs the installed package's command line
    script = venv / ("Scripts" if os.name == "nt" else "bin") / "asyncthrift"
    ran = _run([script, "--version"], user, 120)
    assert ran.returncode == 0 and "asyncthrift 0.1.0" in ran.stdout, ran.stdout + ran.stderr
