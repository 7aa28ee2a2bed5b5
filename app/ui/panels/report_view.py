"""What the compression panel shows of a ``loupe.run.compression_report.CompressionReport``: its
figures read for the plots and table, and its kept streams' frames as RGB, converted from YUV 4:2:0
on a thread of their own (``ReportFrames``) so the UI thread only draws ready-made images."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

STREAMS = ("original", "neural", "h264", "h265")
STREAM_NAMES = {"original": "original", "neural": "neural (HNeRV)", "h264": "H.264", "h265": "H.265"}
METHOD_COLORS = {"neural": "#d84315", "h264": "#1565c0", "h265": "#2e7d32"}
CACHED_FRAMES = 24  # RGB frames kept (the frames around the one shown, every kept stream)
AHEAD = 2  # frames converted past the one asked for (playing forward finds them ready)


def method_color(method: str) -> str:
    return METHOD_COLORS.get(str(method).split("@")[0], "#6a1b9a")


def compose_split(left: np.ndarray, right: np.ndarray, x: float) -> np.ndarray:
    """One image: columns left of ``x`` from ``left``, the rest from ``right`` (same shape)."""
    if left.shape != right.shape:
        raise ValueError(f"split view needs same-size frames, got {left.shape} and {right.shape}")
    cut = int(min(max(round(x), 0), left.shape[1]))
    out = right.copy()
    out[:, :cut] = left[:, :cut]
    return out


def num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def fmt(v: Any, digits: int = 2) -> str:
    f = num(v)
    if math.isinf(f):
        return "∞" if f > 0 else "-∞"
    return "—" if math.isnan(f) else f"{f:.{digits}f}"


class ReportView:
    """The panel's reading of a report (figures only: frames come from ``ReportFrames``)."""

    def __init__(self, report: Any) -> None:
        self.report = report
        self.methods: list[str] = list(report.matched_methods)  # "neural", then the codecs at the neural bits
        self.all_methods: list[str] = list(report.methods)  # ... then the codecs at the other RD sizes ("h264@0.5")
        self.index = np.arange(int(report.frames))

    def per_frame(self, method: str, metric: str) -> np.ndarray:
        m = self.report.methods[method]
        return np.asarray(m.psnr if metric == "psnr" else m.ssim, float)

    def pooled(self, method: str) -> dict:
        return dict(self.report.methods[method].pooled)

    def bpp(self, method: str) -> float:
        return num(self.report.methods[method].bpp)

    def label(self, method: str) -> str:
        return str(self.report.methods[method].label)

    def worst(self, method: str, n: int = 5) -> list[tuple[int, float]]:
        psnr = self.per_frame(method, "psnr")
        return [(int(i), float(psnr[i])) for i in self.report.methods[method].worst(n)]

    def rd_curve(self, method: str) -> tuple[list[float], list[float]]:
        """(bpp, pooled PSNR) of one method at every size, by bpp."""
        pts = sorted((p for p in self.report.rd if p.method == method), key=lambda p: p.bpp)
        return [float(p.bpp) for p in pts], [float(p.psnr_pooled) for p in pts]

    def matched(self, codec: str) -> str | None:
        """The method of ``codec`` at the neural representation's bits (the grid shows that one)."""
        return codec if codec in self.methods else None


class ReportFrames(QObject):
    """A report's frames as RGB, converted on a worker thread. ``get`` answers from the cache or
    None, and asks for that frame (and the next few); ``ready`` (on the UI thread) says new frames
    are in. The newest request replaces one not yet started."""

    ready = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._report: Any = None
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._want: tuple[Any, tuple[str, ...], int] | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def set_report(self, report: Any) -> None:
        with self._cond:
            self._report = report
            self._cache.clear()
            self._want = None

    def get(self, stream: str, index: int, streams: tuple[str, ...]) -> np.ndarray | None:
        """Frame ``index`` of ``stream`` if converted; else None, and the frames of ``streams`` at
        ``index`` (then ahead) are asked for."""
        with self._cond:
            report = self._report
            if report is None or stream not in report.keys or not 0 <= index < report.frames:
                return None
            rgb = self._cache.get((stream, int(index)))
            if rgb is None and not self._closed:
                self._want = (report, tuple(s for s in streams if s in report.keys), int(index))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="loupe-report-frames", daemon=True)
                    self._thread.start()
                self._cond.notify()
            return rgb

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._want is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                report, streams, index = self._want
                self._want = None
            for i in range(index, min(index + AHEAD, report.frames - 1) + 1):
                if not self._convert(report, streams, i):
                    break  # a newer report or frame was asked for: that one first
                if i == index:
                    self.ready.emit()  # the frame to show; the ones ahead quietly

    def _convert(self, report: Any, streams: tuple[str, ...], i: int) -> bool:
        for s in streams:
            with self._cond:
                if self._report is not report or self._want is not None or self._closed:
                    return False
                if (s, i) in self._cache:
                    continue
            rgb = report.frame_rgb(s, i)  # YUV 4:2:0 -> RGB, off the UI thread
            with self._cond:
                if self._report is not report:
                    return False
                if len(self._cache) >= CACHED_FRAMES:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[(s, i)] = rgb
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
