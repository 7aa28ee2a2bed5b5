"""DICOM series: grouping by Series Instance UID, order along the slice normal, series sources."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from loupe.sources import series as series_module
from loupe.sources.base import SourceError
from loupe.sources.open import open_source
from loupe.sources.series import (
    DicomFolderSource,
    DicomSeriesSource,
    open_series,
    parse_series_spec,
    scan_series,
    series_spec,
)

UID_A = "1.2.826.0.1.3680043.8.498.1001"
UID_B = "1.2.826.0.1.3680043.8.498.1002"
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def data_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"{name} is not installed (pydicom-data missing?)")
    return Path(str(found))


def write_ct_series(
    folder: Path,
    uid: str,
    slices: Sequence[tuple[str, Sequence[float], int]],
    *,
    description: str = "",
    number: int | None = None,
    orientation: Sequence[float] = AXIAL,
) -> None:
    """Copies of CT_small, one per (file name, Image Position, Instance Number), in series
    ``uid``; each slice's pixels are HU = 10 x its position index in ``slices`` (a marker)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    shape = ds.pixel_array.shape
    for k, (name, position, instance) in enumerate(slices):
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.InstanceNumber = instance
        ds.SeriesDescription = description
        if number is not None:
            ds.SeriesNumber = number
        ds.PixelData = np.full(shape, 10 * k + 1024, np.int16).tobytes()
        ds.save_as(folder / name)


def two_series(folder: Path) -> None:
    """Series A (number 2, 4 axial slices 2.5 mm apart, Instance Numbers and names shuffled
    against position) and series B (number 1, 3 slices 10 mm apart, positions decreasing
    with instance), plus files that are not DICOM images."""
    write_ct_series(
        folder,
        UID_A,
        [("a3.dcm", (0, 0, 5.0), 1), ("a1.dcm", (0, 0, 0.0), 4), ("a4.dcm", (0, 0, 7.5), 2),
         ("a2.dcm", (0, 0, 2.5), 3)],
        description="Axial A",
        number=2,
    )  # fmt: skip
    write_ct_series(
        folder,
        UID_B,
        [("b1.dcm", (0, 0, -10.0), 1), ("b2.dcm", (0, 0, -20.0), 2), ("b3.dcm", (0, 0, -30.0), 3)],
        description="Axial B",
        number=1,
    )
    (folder / "README.txt").write_text("not DICOM")
    shutil.copy(data_file("rtplan.dcm"), folder / "plan.dcm")


# ---------------------------------------------------------------------------- scanning


def test_scan_groups_by_uid_and_sorts_by_position_not_instance(tmp_path: Path) -> None:
    two_series(tmp_path)
    found = scan_series(tmp_path)
    assert [s.uid for s in found] == [UID_B, UID_A]  # Series Number 1 before 2
    b, a = found
    assert (a.description, a.modality, a.number) == ("Axial A", "CT", 2)
    assert (a.file_count, a.frame_count) == (4, 4)
    assert [p.name for p in a.files] == ["a1.dcm", "a2.dcm", "a3.dcm", "a4.dcm"]
    assert a.positions == pytest.approx((0.0, 2.5, 5.0, 7.5))
    assert a.slice_spacing_mm == pytest.approx(2.5)
    assert [p.name for p in b.files] == ["b3.dcm", "b2.dcm", "b1.dcm"]  # by position
    assert b.positions == pytest.approx((-30.0, -20.0, -10.0))
    assert b.slice_spacing_mm == pytest.approx(10.0)
    assert a.folder == tmp_path and a.spec == f"{tmp_path}#{UID_A}"
    assert "Axial A" in a.label and "4 images" in a.label


def test_scan_a_list_of_files(tmp_path: Path) -> None:
    two_series(tmp_path)
    files = sorted(tmp_path.iterdir(), reverse=True)
    found = scan_series(files)
    assert [s.uid for s in found] == [UID_B, UID_A]
    assert [p.name for p in found[1].files] == ["a1.dcm", "a2.dcm", "a3.dcm", "a4.dcm"]
    assert found[1].folder is None and found[1].spec is None
    assert scan_series([]) == []
    with pytest.raises(SourceError, match="No such file"):
        scan_series(tmp_path / "missing")


def test_oblique_series_sorted_along_the_normal(tmp_path: Path) -> None:
    """Tilted 30 degrees about x, and each slice shifted within its own plane by a different
    amount (as a reconstruction's field of view can be): only the projection of Image Position
    on the slice normal orders it. Sorting by z or y (either way) or by instance gives another
    order (z: 2.6 mm for the slice at 3 mm, 5.0 at 0 mm, 7.2 at 6 mm)."""
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    orientation = [1.0, 0.0, 0.0, 0.0, c, s]
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, col)  # (0, -s, c)
    # (file, mm along the normal, in-plane shift along the column and row cosines, instance)
    layout = [("s0.dcm", 6.0, 4.0, 4.0, 1), ("s1.dcm", 0.0, 10.0, -3.0, 2), ("s2.dcm", 3.0, 0.0, 9.0, 3)]
    slices = [(name, tuple(d * normal + b * col + a * row), inst) for name, d, b, a, inst in layout]
    write_ct_series(tmp_path, UID_A, slices, orientation=orientation)
    along_normal = ["s1.dcm", "s2.dcm", "s0.dcm"]
    by_z = [name for name, pos, _ in sorted(slices, key=lambda t: t[1][2])]
    by_y = [name for name, pos, _ in sorted(slices, key=lambda t: t[1][1])]
    by_instance = [name for name, _, _ in sorted(slices, key=lambda t: t[2])]
    assert along_normal not in (by_z, by_y, by_instance, by_z[::-1], by_y[::-1])  # naive sorts fail here
    (info,) = scan_series(tmp_path)
    assert [p.name for p in info.files] == along_normal
    assert info.positions == pytest.approx((0.0, 3.0, 6.0), abs=1e-6)
    assert info.slice_spacing_mm == pytest.approx(3.0)


def test_slice_spacing_fallbacks(tmp_path: Path) -> None:
    one = tmp_path / "one"
    write_ct_series(one, UID_A, [("x.dcm", (0, 0, 4.0), 1)])
    thickness = float(pydicom.dcmread(data_file("CT_small.dcm")).SliceThickness)
    assert scan_series(one)[0].slice_spacing_mm == pytest.approx(thickness)

    same = tmp_path / "same"  # a time series at one position: not a volume
    write_ct_series(same, UID_A, [("t1.dcm", (0, 0, 4.0), 1), ("t2.dcm", (0, 0, 4.0), 2)])
    info = scan_series(same)[0]
    assert info.slice_spacing_mm is None
    assert [p.name for p in info.files] == ["t1.dcm", "t2.dcm"]  # ties: by instance

    unknown = tmp_path / "unknown"  # no positions: instance order, nominal spacing
    write_ct_series(unknown, UID_A, [("u1.dcm", (0, 0, 0), 2), ("u2.dcm", (0, 0, 0), 1)])
    for path in unknown.iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        del ds.SliceLocation
        ds.SpacingBetweenSlices = 1.25
        ds.save_as(path)
    info = scan_series(unknown)[0]
    assert [p.name for p in info.files] == ["u2.dcm", "u1.dcm"]
    assert info.positions == (None, None)
    assert info.slice_spacing_mm == 1.25


def test_headers_are_cached_until_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    write_ct_series(tmp_path, UID_A, [("a.dcm", (0, 0, 0), 1), ("b.dcm", (0, 0, 1), 2)])
    scan_series(tmp_path)
    reads: list[Path] = []
    real = series_module._read_dataset

    def counting(path: Path, *, header_only: bool = False) -> pydicom.Dataset:
        reads.append(path)
        return real(path, header_only=header_only)

    monkeypatch.setattr(series_module, "_read_dataset", counting)
    assert scan_series(tmp_path)[0].positions == (0.0, 1.0)
    assert reads == []
    write_ct_series(tmp_path, UID_A, [("b.dcm", (0, 0, -1.0), 2)])
    os.utime(tmp_path / "b.dcm", ns=(0, 10**9))  # a different time, whatever the clock
    assert [p.name for p in scan_series(tmp_path)[0].files] == ["b.dcm", "a.dcm"]
    assert [p.name for p in reads] == ["b.dcm"]


# ---------------------------------------------------------------------------- playing


def test_series_source_plays_in_position_order_with_metadata(tmp_path: Path) -> None:
    two_series(tmp_path)
    info = scan_series(tmp_path)[1]
    with DicomSeriesSource(info) as source:
        assert source.frame_count == 4 and source.fps is None
        assert source.series == [info] and source.info is info
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.timestamp for f in frames] == [0.0, 1.0, 2.0, 3.0]
    # write order was a3, a1, a4, a2: HU marker 10 x write index
    assert [float(f.pixels[0, 0]) for f in frames] == [10.0, 30.0, 0.0, 20.0]
    md = frames[0].metadata
    assert md["series_uid"] == UID_A and md["series_description"] == "Axial A"
    assert md["series_number"] == 2 and md["modality"] == "CT"
    assert [f.metadata["instance"] for f in frames] == [4, 3, 1, 2]
    assert [f.metadata["slice_position_mm"] for f in frames] == pytest.approx([0, 2.5, 5, 7.5])
    assert {f.metadata["slice_spacing_mm"] for f in frames} == {2.5}
    assert md["pixel_spacing"] == pytest.approx([0.661468, 0.661468])
    assert (md["window_center"], md["window_width"]) == (40.0, 400.0)
    assert md["rescale_intercept"] == -1024.0
    assert [f.metadata["file_index"] for f in frames] == [0, 1, 2, 3]
    assert md["frame_in_file"] == 0 and md["series_frames"] == 4


def test_open_source_on_a_folder_opens_the_first_series_and_lists_all(tmp_path: Path) -> None:
    two_series(tmp_path)
    source = open_source(tmp_path)
    assert isinstance(source, DicomFolderSource)
    assert [s.uid for s in source.series] == [UID_B, UID_A]
    assert source.info.uid == UID_B and source.frame_count == 3
    assert "Axial B" in source.name
    source.close()

    other = open_series(tmp_path, UID_A)
    assert other.info.uid == UID_A and other.frame_count == 4
    assert [s.uid for s in other.series] == [UID_B, UID_A]
    by_spec = open_source(series_spec(tmp_path, UID_A))
    assert isinstance(by_spec, DicomFolderSource) and by_spec.info == other.info
    assert [f.metadata["slice_position_mm"] for f in by_spec] == pytest.approx([0, 2.5, 5, 7.5])
    with pytest.raises(SourceError, match=r"No series 9\.9 in folder .*Axial A"):
        open_series(tmp_path, "9.9")


def test_parse_series_spec(tmp_path: Path) -> None:
    assert parse_series_spec(f"{tmp_path}#1.2.3") == (tmp_path, "1.2.3")
    assert parse_series_spec(f"{tmp_path}#") == (tmp_path, "")
    assert parse_series_spec(str(tmp_path)) is None
    assert parse_series_spec(f"{tmp_path / 'missing'}#1.2") is None
    odd = tmp_path / "scan#1.dcm"  # an existing file with # in its name is a file
    odd.write_bytes(b"")
    assert parse_series_spec(odd) is None


def test_multiframe_file_in_a_series_keeps_frame_order_and_timing(tmp_path: Path) -> None:
    shutil.copy(data_file("examples_ybr_color.dcm"), tmp_path / "cine.dcm")
    (info,) = scan_series(tmp_path)
    assert (info.file_count, info.frame_count) == (1, 30)
    source = open_source(tmp_path)
    assert source.fps == pytest.approx(1000 / 33.333)
    frames = [source.read() for _ in range(3)]
    assert [f.metadata["frame_in_file"] for f in frames] == [0, 1, 2]  # type: ignore[union-attr]
    assert [f.timestamp for f in frames] == pytest.approx([0, 0.033333, 0.066666])  # type: ignore[union-attr]
    assert frames[0].metadata["slice_spacing_mm"] is None  # type: ignore[union-attr]

    enhanced = tmp_path / "enhanced"
    enhanced.mkdir()
    shutil.copy(data_file("eCT_Supplemental.dcm"), enhanced / "ct.dcm")
    (info,) = scan_series(enhanced)
    assert info.frame_count == 2 and None not in info.positions
    frames = list(DicomSeriesSource(info))
    positions = [f.metadata["slice_position_mm"] for f in frames]
    assert positions == pytest.approx(list(info.positions))
    assert frames[0].metadata["slice_spacing_mm"] == pytest.approx(abs(positions[1] - positions[0]))


def test_series_without_window_shares_one_window(tmp_path: Path) -> None:
    ds = pydicom.dcmread(data_file("MR_small.dcm"))
    del ds.WindowCenter
    del ds.WindowWidth
    raw = ds.pixel_array
    ds.SeriesInstanceUID = UID_A
    for k in range(3):
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.ImageOrientationPatient = AXIAL
        ds.PixelData = (raw // (k + 1)).astype(raw.dtype).tobytes()
        ds.save_as(tmp_path / f"mr{k}.dcm")
    frames = list(open_source(tmp_path))
    windows = {(f.metadata["window_center"], f.metadata["window_width"]) for f in frames}
    assert len(windows) == 1
    middle = frames[1].pixels
    low, high = float(middle.min()), float(middle.max())
    assert windows == {((low + high) / 2, high - low)}
