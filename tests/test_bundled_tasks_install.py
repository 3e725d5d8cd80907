"""The bundled tasks travel with an installed glm-extract, not only with a checkout: a wheel built
from this tree, installed into a fresh prefix, lists and loads them from an unrelated directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("pyproject.toml", "README.md", "pipeline", "flows", "emulator", "schemas")


def install_wheel(wheel: Path, prefix: Path) -> Path:
    """Unpack a pure-Python wheel into ``prefix`` as an installer would (never ``pip install``: with
    the package already installed in this environment, pip would uninstall it first)."""
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            head, _, rest = member.filename.partition(".data/data/")
            target = prefix / rest if rest and "/" not in head else site / member.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
    return site


def test_every_bundled_task_is_listed_as_data_files_of_the_package() -> None:
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    bundled = sorted(p.name for p in (ROOT / "schemas").iterdir() if (p / "task.toml").is_file())
    assert data_files == {f"share/glm-extract/schemas/{name}": [f"schemas/{name}/*"] for name in bundled}


@pytest.mark.slow
def test_an_installed_wheel_finds_its_bundled_tasks_anywhere(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    prefix = tmp_path / "prefix"
    site = install_wheel(wheel, prefix)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLM_EXTRACT_")}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "tasks"], cwd=elsewhere, capture_output=True,
                            text=True, timeout=120, check=False, env={**env, "PYTHONPATH": str(site), "COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    assert f"{prefix}/share/glm-extract/schemas" in result.stdout  # the installed copy, not this checkout
    assert "ticket_qa" in result.stdout and "financial_report" in result.stdout
