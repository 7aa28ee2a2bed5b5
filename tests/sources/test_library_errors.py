"""A library that fails in a way no source foresaw (a new PyAV that changed its API, a decoder bug)
gives a SourceError that names the file, on opening and on reading; PyAV 19's API changes
(no ``metadata_errors``, ``AVRational`` rates) are handled."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import pytest

from loupe.base.media import clip_path
from loupe.sources import video as video_module
from loupe.sources.base import SourceError
from loupe.sources.open import open_source
from loupe.sources.video import VideoSource, _open_options, _rational

CLIP = "carphone_pristine.mp4"


class _Boom(RuntimeError):
    pass


def _raise_on_open(*args, **kwargs):
    raise _Boom("open() got an unforeseen problem\nand a second line")


def test_unexpected_error_opening_names_the_file_and_logs_the_traceback(monkeypatch, caplog):
    monkeypatch.setattr(av, "open", _raise_on_open)
    with caplog.at_level(logging.INFO, logger="loupe"), pytest.raises(SourceError) as info:
        open_source(str(clip_path(CLIP)))
    msg = str(info.value)
    assert CLIP in msg and "_Boom" in msg and "unforeseen problem" in msg
    assert "\n" not in msg  # one line, whatever the library wrote
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], _Boom)]
    assert logged, "the traceback goes to the log"


def test_unexpected_error_from_a_directly_built_video_source(monkeypatch):
    monkeypatch.setattr(av, "open", _raise_on_open)
    with pytest.raises(SourceError, match=CLIP):
        VideoSource(clip_path(CLIP))


class _DecoderFailsAt:
    """A real container whose decode() raises a non-FFmpeg error after ``n`` frames."""

    def __init__(self, container, n: int) -> None:
        self._c, self._n = container, n

    def __getattr__(self, name):
        return getattr(self._c, name)

    def decode(self, *args, **kwargs):
        for i, frame in enumerate(self._c.decode(*args, **kwargs)):
            if i == self._n:
                raise ValueError("decoder state is inconsistent")
            yield frame


def test_unexpected_error_while_decoding_names_file_and_frame(monkeypatch):
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _DecoderFailsAt(real_open(*a, **k), 3))
    source = VideoSource(clip_path(CLIP))
    it = iter(source)
    got = [next(it).index for _ in range(3)]
    with pytest.raises(SourceError) as info:
        next(it)
    source.close()
    assert got == [0, 1, 2]
    msg = str(info.value)
    assert CLIP in msg and "frame 3" in msg and "ValueError" in msg and "inconsistent" in msg


def test_any_error_reading_any_source_is_a_source_error(monkeypatch, tmp_path):
    """The iterator every source shares turns an unforeseen exception into a SourceError
    naming the source (here an image converter that fails)."""
    import cv2
    import numpy as np

    from loupe.sources.images import ImageSource

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    source = ImageSource(tmp_path / "a.png")

    def broken():
        raise KeyError("pixel format")

    monkeypatch.setattr(source, "read", broken)
    with pytest.raises(SourceError, match=r"a\.png.*KeyError"):
        next(iter(source))


def test_pyav_19_open_has_no_metadata_errors(monkeypatch):
    monkeypatch.setattr(av, "__version__", "19.0.2")
    assert _open_options() == {}
    monkeypatch.setattr(av, "__version__", "18.1.0")
    assert _open_options() == {"metadata_errors": "replace"}
    # the options chosen for the PyAV installed here open the clip
    with VideoSource(clip_path(CLIP)) as source:
        assert source.frame_count == 120


class _AVRationalLike:
    """PyAV 19's rational: numerator/denominator, falsy when 0 (unset), never None."""

    def __init__(self, num: int, den: int) -> None:
        self.numerator, self.denominator = num, den

    def __bool__(self) -> bool:
        return self.numerator != 0


def test_rationals_of_every_pyav():
    assert _rational(_AVRationalLike(1, 12800)) == Fraction(1, 12800)
    assert _rational(_AVRationalLike(0, 1)) is None  # PyAV 19's unset time base
    assert _rational(None) is None  # older PyAV's unset
    assert _rational(Fraction(30000, 1001)) == Fraction(30000, 1001)


def test_timestamps_and_rate_from_the_installed_pyav():
    with VideoSource(clip_path(CLIP)) as source:
        frames = [next(iter(source)) for _ in range(3)]
        assert source.fps == pytest.approx(30000 / 1001)
    assert isinstance(source._time_base, Fraction)
    assert [round(f.timestamp * 30000 / 1001) for f in frames] == [0, 1, 2]


def test_frame_count_after_close_does_not_touch_the_closed_stream():
    source = VideoSource(clip_path(CLIP))
    source.close()
    assert source.frame_count in (None, 120)  # PyAV 19 raises on a closed container's stream


def test_video_module_uses_the_chosen_open_options():
    assert _open_options() == video_module._OPEN_OPTIONS
