"""open_source dispatch and classify_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.data import get_testdata_file

import loupe.sources
from loupe.base.media import clip_path
from loupe.sources.base import SourceError
from loupe.sources.camera import CameraSource
from loupe.sources.dicom import DicomSource
from loupe.sources.images import ImageSource
from loupe.sources.open import classify_path, open_source, parse_camera
from loupe.sources.series import DicomFolderSource
from loupe.sources.video import VideoSource


def ct_small() -> Path:
    found = get_testdata_file("CT_small.dcm", download=False)
    assert found is not None
    return Path(str(found))


def png(path: Path) -> Path:
    assert cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    return path


class FakeCapture:
    def __init__(self, device: int) -> None:
        self.device = device

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((4, 4, 3), np.uint8)

    def set(self, prop: int, value: float) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


@pytest.mark.parametrize(("spec", "device"), [("camera:1", 1), ("2", 2), (0, 0), ("cam:3", 3)])
def test_camera_specs(monkeypatch: pytest.MonkeyPatch, spec: str | int, device: int) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    source = open_source(spec)
    assert isinstance(source, CameraSource)
    assert source.device == device
    assert source.live
    source.close()


def test_parse_camera() -> None:
    assert parse_camera("camera:12") == 12
    assert parse_camera(" CAMERA: 4 ") == 4
    assert parse_camera("video.mp4") is None
    assert parse_camera("camera:") is None
    assert parse_camera(-1) is None


def test_video_file() -> None:
    for spec in (clip_path("bikes.mp4"), str(clip_path("bikes.mp4"))):
        source = open_source(spec)
        assert isinstance(source, VideoSource)
        assert source.frame_count == 250
        source.close()


def test_video_with_unknown_suffix_goes_to_ffmpeg(tmp_path: Path) -> None:
    path = tmp_path / "clip.data"
    shutil.copy(clip_path("carphone_distorted.mp4"), path)
    assert classify_path(path) == "unknown"
    source = open_source(path)
    assert isinstance(source, VideoSource) and source.frame_count == 120
    source.close()


def test_image_file_and_folder(tmp_path: Path) -> None:
    one = png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    assert isinstance(open_source(one), ImageSource)
    source = open_source(tmp_path)
    assert isinstance(source, ImageSource) and source.frame_count == 2


def test_dicom_file_by_suffix_and_by_content(tmp_path: Path) -> None:
    assert isinstance(open_source(ct_small()), DicomSource)
    no_suffix = tmp_path / "IM0001"
    shutil.copy(ct_small(), no_suffix)
    assert classify_path(no_suffix) == "dicom"
    assert isinstance(open_source(no_suffix), DicomSource)


def test_dicom_folder(tmp_path: Path) -> None:
    shutil.copy(ct_small(), tmp_path / "1.dcm")
    shutil.copy(ct_small(), tmp_path / "2.dcm")
    png(tmp_path / "thumbnail.png")
    source = open_source(tmp_path)
    assert isinstance(source, DicomFolderSource) and source.frame_count == 2


def test_folder_mostly_images(tmp_path: Path) -> None:
    shutil.copy(ct_small(), tmp_path / "1.dcm")
    for i in range(3):
        png(tmp_path / f"img{i}.png")
    assert isinstance(open_source(tmp_path), ImageSource)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="No such file: "):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(SourceError, match="No images"):
        open_source(tmp_path)
    model = tmp_path / "net.onnx"
    model.write_bytes(b"\x08\x07")
    with pytest.raises(SourceError, match="ONNX model"):
        open_source(model)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1000).bytes(1000))
    with pytest.raises(SourceError, match=r"junk\.mp4"):
        open_source(junk)
    bad_dicom = tmp_path / "bad.dcm"
    bad_dicom.write_bytes(np.random.default_rng(1000).bytes(1000))
    with pytest.raises(SourceError, match="not a DICOM file"):
        open_source(bad_dicom)


def test_classify_path(tmp_path: Path) -> None:
    assert classify_path(tmp_path) == "folder"
    assert classify_path(clip_path("bikes.mp4")) == "video"
    assert classify_path(tmp_path / "x.MKV") == "video"
    assert classify_path(tmp_path / "x.webm") == "video"
    assert classify_path(tmp_path / "x.PNG") == "image"
    assert classify_path(tmp_path / "x.tiff") == "image"
    assert classify_path(tmp_path / "x.dcm") == "dicom"
    assert classify_path(ct_small()) == "dicom"
    assert classify_path(tmp_path / "model.onnx") == "model"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert classify_path(text) == "unknown"
    assert classify_path(str(tmp_path / "nothing")) == "unknown"


def test_lazy_package_exports() -> None:
    assert loupe.sources.open_source is open_source
    assert loupe.sources.VideoSource is VideoSource
    with pytest.raises(AttributeError):
        _ = loupe.sources.NoSuchThing  # type: ignore[attr-defined]
