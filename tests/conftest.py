"""Shared fixtures: isolated env and dirs, the built-in tasks, a fake GLM behind MockTransport."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas"
SAMPLE = REPO / "data" / "sample"
# Real third-party documents are not shipped (licences); CI points GLM_EXTRACT_REAL_DATA at a folder of
# them (tickets_real_en.parquet, financial_reports_real.parquet) and the tests that read them skip without it.
REAL_DATA = Path(os.environ["GLM_EXTRACT_REAL_DATA"]) if os.environ.get("GLM_EXTRACT_REAL_DATA") else None


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees a real key or writes outside its tmp dir."""
    for name in ("ZHIPUAI_API_KEY", "GLM_EXTRACT_API_KEY", "GLM_EXTRACT_BASE_URL", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLM_EXTRACT_JOURNAL_PATH", str(tmp_path / "journal.sqlite"))
    monkeypatch.setenv("GLM_EXTRACT_SCHEMAS_DIR", str(SCHEMAS))
    # offline runs in tests: the emulator's clean profile (instant, well-formed); tests of its realistic
    # profile ask for it by name (tests/emulator)
    monkeypatch.setenv("GLM_EXTRACT_EMULATOR_PROFILE", "clean")
    yield


def _chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False).returncode == 0


@pytest.fixture
def immutable() -> Iterator[object]:
    """Make paths immutable (``chattr +i``: even root cannot write); undone after the test."""
    marked: list[Path] = []

    def mark(path: Path) -> None:
        if not _chattr("+i", path):
            pytest.skip("chattr +i is not available here")
        marked.append(path)

    yield mark
    for path in marked:
        _chattr("-i", path)
