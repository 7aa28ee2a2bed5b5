"""DicomSource and DicomFolderSource on pydicom's and pydicom-data's test files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.pixels.decoders.base import get_decoder

from loupe.sources import dicom as dicom_module
from loupe.sources.base import SourceError
from loupe.sources.dicom import DicomSource, is_dicom_file, list_dicom_files
from loupe.sources.series import DicomFolderSource


def data_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"{name} is not installed (pydicom-data missing?)")
    return Path(str(found))


def raw_pixels(name: str) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = pydicom.dcmread(data_file(name))
    return ds, ds.pixel_array


# ---------------------------------------------------------------------------- single files


def test_ct_small_in_hounsfield_units() -> None:
    ds, raw = raw_pixels("CT_small.dcm")
    with DicomSource(data_file("CT_small.dcm")) as source:
        assert source.frame_count == 1
        assert source.fps is None
        assert source.live is False
        frames = list(source)
    assert len(frames) == 1
    frame = frames[0]
    assert frame.pixels.shape == (128, 128)
    assert frame.pixels.dtype == np.float32
    expected = raw.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(frame.pixels, expected.astype(np.float32))
    assert frame.pixels.min() < -800  # air/background in HU
    md = frame.metadata
    assert md["modality"] == "CT"
    assert md["rescale_slope"] == 1.0
    assert md["rescale_intercept"] == -1024.0
    # CT_small has no window tags: the CT default (level 40, width 400) applies.
    assert (md["window_center"], md["window_width"]) == (40.0, 400.0)
    assert md["window_from_file"] is False
    assert md["pixel_spacing"] == pytest.approx([0.661468, 0.661468])
    assert md["series_uid"] == str(ds.SeriesInstanceUID)
    assert md["instance"] == 1
    assert md["slice_position_mm"] == pytest.approx(float(ds.ImagePositionPatient[2]))
    assert md["photometric"] == "MONOCHROME2"
    assert md["inverted"] is False
    assert md["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert md["path"] == str(data_file("CT_small.dcm"))
    assert frame.timestamp == 0.0


def test_window_from_file_and_ct_default_when_deleted(tmp_path: Path) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 300, 1500
    with_window = tmp_path / "ct_window.dcm"
    ds.save_as(with_window)
    md = DicomSource(with_window).read().metadata  # type: ignore[union-attr]
    assert (md["window_center"], md["window_width"], md["window_from_file"]) == (300, 1500, True)

    del ds.WindowCenter
    del ds.WindowWidth
    without = tmp_path / "ct_nowindow.dcm"
    ds.save_as(without)
    md = DicomSource(without).read().metadata  # type: ignore[union-attr]
    assert (md["window_center"], md["window_width"], md["window_from_file"]) == (40, 400, False)


def test_mr_window_from_file_else_full_range(tmp_path: Path) -> None:
    frame = DicomSource(data_file("MR_small.dcm")).read()
    assert frame is not None
    assert frame.pixels.shape == (64, 64) and frame.pixels.dtype == np.float32
    md = frame.metadata
    assert md["modality"] == "MR"
    assert (md["window_center"], md["window_width"]) == (600.0, 1600.0)
    assert md["pixel_spacing"] == pytest.approx([0.3125, 0.3125])

    ds = pydicom.dcmread(data_file("MR_small.dcm"))
    del ds.WindowCenter
    del ds.WindowWidth
    path = tmp_path / "mr_nowindow.dcm"
    ds.save_as(path)
    frame = DicomSource(path).read()
    assert frame is not None
    low, high = float(frame.pixels.min()), float(frame.pixels.max())
    assert frame.metadata["window_center"] == pytest.approx((low + high) / 2)
    assert frame.metadata["window_width"] == pytest.approx(high - low)


def test_multi_valued_window_takes_the_first() -> None:
    frame = DicomSource(data_file("MR-SIEMENS-DICOM-WithOverlays.dcm")).read()
    assert frame is not None
    assert (frame.metadata["window_center"], frame.metadata["window_width"]) == (450.0, 790.0)


def test_rtdose_15_frames_with_dose_scaling_and_positions() -> None:
    ds, raw = raw_pixels("rtdose.dcm")
    source = DicomSource(data_file("rtdose.dcm"))
    assert source.frame_count == 15
    frames = list(source)
    assert len(frames) == 15
    assert [f.index for f in frames] == list(range(15))
    assert [f.timestamp for f in frames] == [float(i) for i in range(15)]
    for frame, plane in zip(frames, raw, strict=True):
        assert frame.pixels.shape == (10, 10)
        expected = (plane.astype(np.float64) * float(ds.DoseGridScaling)).astype(np.float32)
        np.testing.assert_allclose(frame.pixels, expected, rtol=1e-6)
    positions = [f.metadata["slice_position_mm"] for f in frames]
    assert np.diff(positions) == pytest.approx(np.full(14, 5.0))
    assert frames[0].metadata["modality"] == "RTDOSE"


def test_emri_small_multiframe() -> None:
    _, raw = raw_pixels("emri_small.dcm")
    with DicomSource(data_file("emri_small.dcm")) as source:
        assert source.frame_count == 10
        source.seek(7)
        seventh = source.read()
        assert seventh is not None and seventh.index == 7
        np.testing.assert_array_equal(seventh.pixels, raw[7].astype(np.float32))
        source.seek(0)
        frames = list(source)
    assert len(frames) == 10
    assert all(f.pixels.shape == (64, 64) for f in frames)
    assert not np.array_equal(frames[0].pixels, frames[5].pixels)
    for frame, plane in zip(frames, raw, strict=True):
        np.testing.assert_array_equal(frame.pixels, plane.astype(np.float32))


def test_frame_time_gives_timestamps_and_fps() -> None:
    source = DicomSource(data_file("examples_ybr_color.dcm"))
    assert source.frame_count == 30
    assert source.fps == pytest.approx(1000 / 33.333)
    frames = [source.read() for _ in range(3)]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.033333, 0.066666])  # type: ignore[union-attr]
    assert frames[0].pixels.shape == (240, 320, 3)  # type: ignore[union-attr]
    assert frames[0].pixels.dtype == np.uint8  # type: ignore[union-attr]


def test_jpeg2000_lossless_colour_matches_uncompressed() -> None:
    compressed = DicomSource(data_file("US1_J2KR.dcm")).read()
    plain = DicomSource(data_file("US1_UNCR.dcm")).read()
    assert compressed is not None and plain is not None
    assert compressed.pixels.shape == (480, 640, 3)
    assert compressed.pixels.dtype == np.uint8
    np.testing.assert_array_equal(compressed.pixels, plain.pixels)
    assert compressed.metadata["transfer_syntax"] == "1.2.840.10008.1.2.4.90"
    assert compressed.metadata["window_center"] == 127.5


def test_jpeg2000_monochrome() -> None:
    frame = DicomSource(data_file("JPEG2000.dcm")).read()
    assert frame is not None
    assert frame.pixels.shape == (1024, 256) and frame.pixels.dtype == np.float32


def test_rgb_palette_and_monochrome1() -> None:
    rgb = DicomSource(data_file("SC_rgb.dcm")).read()
    assert rgb is not None and rgb.pixels.shape == (100, 100, 3) and rgb.pixels.dtype == np.uint8
    palette = DicomSource(data_file("OBXXXX1A.dcm")).read()
    assert palette is not None and palette.pixels.shape == (600, 800, 3)
    assert palette.pixels.dtype == np.uint8

    ds, raw = raw_pixels("RG3_UNCI.dcm")
    frame = DicomSource(data_file("RG3_UNCI.dcm")).read()
    assert frame is not None
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 10
    np.testing.assert_array_equal(frame.pixels, (1023 - raw.astype(np.int32)).astype(np.float32))
    assert frame.metadata["inverted"] is True
    assert frame.metadata["window_center"] == pytest.approx(1023 - float(ds.WindowCenter))


def test_enhanced_ct_functional_groups() -> None:
    _, raw = raw_pixels("eCT_Supplemental.dcm")
    frames = list(DicomSource(data_file("eCT_Supplemental.dcm")))
    assert len(frames) == 2
    md = frames[0].metadata
    assert md["rescale_intercept"] == -1024.0
    assert (md["window_center"], md["window_width"]) == (49.0, 102.0)
    assert md["pixel_spacing"] == pytest.approx([0.388672, 0.388672])
    np.testing.assert_array_equal(frames[1].pixels, raw[1].astype(np.float32) - 1024)
    assert frames[0].metadata["slice_position_mm"] != frames[1].metadata["slice_position_mm"]


def test_missing_decoder_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    path = data_file("US1_J2KR.dcm")
    uid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    decoder = get_decoder(uid)
    monkeypatch.setattr(decoder, "_available", {})  # as if no plugin were installed
    with pytest.raises(SourceError) as info:
        DicomSource(path)
    message = str(info.value)
    assert "pylibjpeg-openjpeg" in message
    assert "JPEG 2000 Image Compression (Lossless Only)" in message
    assert "1.2.840.10008.1.2.4.90" in message
    assert "US1_J2KR.dcm" in message


def test_missing_decoder_found_while_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydicom's own 'missing dependencies' RuntimeError is translated too."""
    path = data_file("JPEG2000.dcm")
    uid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    decoder = get_decoder(uid)
    monkeypatch.setattr(decoder, "_available", {})

    class LooksAvailable:
        is_available = True

    monkeypatch.setattr(dicom_module, "get_decoder", lambda _uid: LooksAvailable())
    with pytest.raises(SourceError, match="pylibjpeg-openjpeg") as info:
        DicomSource(path)
    assert "JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)" in str(info.value)


@pytest.mark.parametrize(
    ("compressed", "plain", "atol"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", 0),  # JPEG-LS lossless
        ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm", 0),  # JPEG-LS, 10 frames
        ("MR_small_jp2klossless.dcm", "MR_small.dcm", 0),  # JPEG 2000 lossless
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm", 0),  # JPEG 2000, 10 frames
        ("MR_small_RLE.dcm", "MR_small.dcm", 0),  # RLE (pydicom's own decoder)
        ("SC_rgb_rle.dcm", "SC_rgb.dcm", 0),  # RLE colour
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm", 0),  # JPEG lossless SV1, RGB
        ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb.dcm", 8),  # JPEG baseline, YBR_FULL -> RGB
        ("SC_ybr_full_uncompressed.dcm", "SC_rgb.dcm", 8),  # YBR_FULL, uncompressed
    ],
)
def test_compressed_and_ybr_decode_like_the_uncompressed(
    compressed: str, plain: str, atol: int
) -> None:
    with DicomSource(data_file(compressed)) as source, DicomSource(data_file(plain)) as ref:
        assert source.frame_count == ref.frame_count
        frames, expected = list(source), list(ref)
    stored = frames[0].metadata["transfer_syntax"], frames[0].metadata["photometric"]
    assert stored != (expected[0].metadata["transfer_syntax"], expected[0].metadata["photometric"])
    for frame, want in zip(frames, expected, strict=True):
        assert frame.pixels.dtype == want.pixels.dtype and frame.pixels.shape == want.pixels.shape
        if atol:
            diff = np.abs(frame.pixels.astype(np.int32) - want.pixels.astype(np.int32))
            assert diff.max() <= atol and diff.mean() < 2
        else:
            np.testing.assert_array_equal(frame.pixels, want.pixels)
    if frames[0].pixels.ndim == 3:  # colour comes out RGB, whatever the stored photometric
        red = frames[0].pixels[5, 50].astype(int)  # SC_rgb's top band is pure red
        assert np.abs(red - [255, 0, 0]).max() <= atol
        assert frames[0].metadata["window_center"] == 127.5


@pytest.mark.parametrize(
    ("name", "shape", "syntax"),
    [
        ("JPEGLSNearLossless_16.dcm", (50, 10), "1.2.840.10008.1.2.4.81"),
        ("JPEG-LL.dcm", (1024, 256), "1.2.840.10008.1.2.4.70"),
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", (768, 1024), "1.2.840.10008.1.2.4.70"),
        ("JPGExtended.dcm", (1024, 256), "1.2.840.10008.1.2.4.51"),
    ],
)
def test_more_compressed_syntaxes_decode(name: str, shape: tuple[int, int], syntax: str) -> None:
    ds, raw = raw_pixels(name)
    frame = DicomSource(data_file(name)).read()
    assert frame is not None and frame.metadata["transfer_syntax"] == syntax
    assert frame.pixels.shape == shape and frame.pixels.dtype == np.float32
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    np.testing.assert_allclose(frame.pixels, raw * slope + intercept, rtol=1e-6)


_HIDE_DECODERS = """
import json, sys

HIDDEN = {"pylibjpeg", "libjpeg", "openjpeg", "rle", "PIL", "gdcm", "jpeg_ls", "pyjpegls"}


class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None


sys.meta_path.insert(0, Hide())
from loupe.sources.base import SourceError
from loupe.sources.dicom import DicomSource

messages = {}
for path in sys.argv[1:]:
    try:
        DicomSource(path).read()
        messages[path] = None
    except SourceError as exc:
        messages[path] = str(exc)
loaded = sorted(n for n in sys.modules if n.split(".")[0] in HIDDEN)
sys.stdout.write(json.dumps({"messages": messages, "loaded": loaded}))
"""


def test_missing_decoders_name_the_syntax_and_the_package() -> None:
    """With every optional decoder hidden (before pydicom is imported): JPEG 2000, JPEG-LS and
    JPEG files fail with a message naming the transfer syntax and what to install; RLE still
    decodes (pydicom's own decoder)."""
    names = [
        "US1_J2KR.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "MR_small_RLE.dcm",
    ]
    paths = {name: str(data_file(name)) for name in names}
    done = subprocess.run(
        [sys.executable, "-c", _HIDE_DECODERS, *paths.values()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["loaded"] == []
    messages = {name: result["messages"][path] for name, path in paths.items()}
    expected = {
        "US1_J2KR.dcm": (
            "JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)",
            "pylibjpeg-openjpeg",
        ),
        "MR_small_jpeg_ls_lossless.dcm": (
            "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)",
            "pylibjpeg-libjpeg",
        ),
        "JPEGLSNearLossless_16.dcm": (
            "JPEG-LS Lossy (Near-Lossless) Image Compression (1.2.840.10008.1.2.4.81)",
            "pylibjpeg-libjpeg",
        ),
        "SC_rgb_jpeg_dcmtk.dcm": ("JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)", "pylibjpeg-libjpeg"),
    }
    for name, (syntax, package) in expected.items():
        message = messages[name]
        assert message is not None, f"{name} decoded with the decoders hidden"
        assert name in message and syntax in message and f"install {package}" in message
    assert "pyjpegls" in messages["MR_small_jpeg_ls_lossless.dcm"]
    assert messages["MR_small_RLE.dcm"] is None


@pytest.mark.parametrize(
    "content",
    [np.random.default_rng(4096).bytes(4096), b"", b"DICM" * 10, b"\x89PNG\r\n\x1a\n" + b"\0" * 100],
    ids=["random", "empty", "short", "png"],
)
def test_not_dicom(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "scan.dcm"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=r"scan\.dcm is not a"):
        DicomSource(path)


def test_damaged_dicom(tmp_path: Path) -> None:
    data = data_file("CT_small.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:-5000])  # pixel data cut short
    with pytest.raises(SourceError, match=r"cut\.dcm") as info:
        DicomSource(path)
    assert "damaged" in str(info.value)


def test_no_pixel_data(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no pixel data"):
        DicomSource(data_file("rtplan.dcm"))
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    with pytest.raises(SourceError, match="pixel data is missing"):
        DicomSource(path)


def test_file_without_preamble_or_meta(tmp_path: Path) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    ds.preamble = None
    ds.file_meta = FileMetaDataset()
    path = tmp_path / "nometa.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert not is_dicom_file(path)
    frame = DicomSource(path).read()
    assert frame is not None
    assert frame.metadata["transfer_syntax"] == "1.2.840.10008.1.2"
    np.testing.assert_array_equal(
        frame.pixels, DicomSource(data_file("CT_small.dcm")).read().pixels
    )  # type: ignore[union-attr]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="No such file"):
        DicomSource(tmp_path / "none.dcm")


def test_seek_bounds_and_close() -> None:
    source = DicomSource(data_file("rtdose.dcm"))
    source.seek(15)
    assert source.read() is None
    with pytest.raises(SourceError):
        source.seek(16)
    with pytest.raises(SourceError):
        source.frame_at(15)
    assert source.frame_at(3).index == 3
    source.close()
    source.close()
    source.seek(0)
    assert source.read() is None


# ---------------------------------------------------------------------------- folders


def make_slices(
    folder: Path, z_values: list[float], instances: list[int], names: list[str]
) -> None:
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    for z, instance, name in zip(z_values, instances, names, strict=True):
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.InstanceNumber = instance
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.PixelData = (ds.pixel_array * 0 + int(z) + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / name)


def test_folder_sorted_by_slice_position(tmp_path: Path) -> None:
    make_slices(tmp_path, [30.0, 10.0, 20.0], [1, 3, 2], ["a.dcm", "b.dcm", "IM0003"])
    (tmp_path / "readme.txt").write_text("not dicom")
    (tmp_path / "junk.dcm").write_bytes(np.random.default_rng(300).bytes(300))
    assert is_dicom_file(tmp_path / "IM0003")
    assert {p.name for p in list_dicom_files(tmp_path)} == {"a.dcm", "b.dcm", "IM0003", "junk.dcm"}
    with DicomFolderSource(tmp_path) as source:
        assert [p.name for p in source.files] == ["b.dcm", "IM0003", "a.dcm"]
        assert source.frame_count == 3
        frames = list(source)
        assert [f.metadata["slice_position_mm"] for f in frames] == [10.0, 20.0, 30.0]
        assert [float(f.pixels[0, 0]) for f in frames] == [10.0, 20.0, 30.0]  # HU = z
        assert [f.index for f in frames] == [0, 1, 2]
        assert [f.metadata["file_index"] for f in frames] == [0, 1, 2]
        source.seek(1)
        assert source.read().metadata["instance"] == 2  # type: ignore[union-attr]


def test_folder_without_positions_uses_instance_then_name(tmp_path: Path) -> None:
    make_slices(tmp_path, [0.0, 0.0, 0.0], [2, 1, 2], ["x2.dcm", "x10.dcm", "x1.dcm"])
    for path in tmp_path.iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        del ds.SliceLocation
        ds.save_as(path)
    source = DicomFolderSource(tmp_path)
    assert [p.name for p in source.files] == ["x10.dcm", "x1.dcm", "x2.dcm"]


def test_folder_with_multiframe_files(tmp_path: Path) -> None:
    """Two multi-frame files of different series: the folder plays one series at a time."""
    shutil.copy(data_file("rtdose.dcm"), tmp_path / "dose.dcm")
    shutil.copy(data_file("emri_small.dcm"), tmp_path / "mri.dcm")
    source = DicomFolderSource(tmp_path)
    assert [s.frame_count for s in source.series] == [15, 10]  # Series Number order
    assert source.frame_count == 15
    frames = list(source)
    assert [f.index for f in frames] == list(range(15))
    assert [f.metadata["frame_in_file"] for f in frames] == list(range(15))
    other = DicomFolderSource(tmp_path, series_uid=source.series[1].uid)
    frames = list(other)
    assert len(frames) == 10 and {f.metadata["file_index"] for f in frames} == {0}
    assert [f.metadata["frame_in_file"] for f in frames] == list(range(10))


def test_folder_without_dicom_images(tmp_path: Path) -> None:
    (tmp_path / "junk.dcm").write_bytes(np.random.default_rng(300).bytes(300))
    shutil.copy(data_file("rtplan.dcm"), tmp_path / "plan.dcm")
    with pytest.raises(SourceError, match="No DICOM images"):
        DicomFolderSource(tmp_path)
