"""A neural video codec against H.264 and H.265 at matched bits, frame by frame (Qt-free).

``build_report(model, clip)`` runs a compression-contract model (``loupe.tasks.compression``)
over every frame of the clip, encodes the same target frames with each reference codec at the
model's size in bits (and at other sizes for the rate-distortion plot), and scores everything
against the target frames with ``loupe.base.quality`` (YUV 4:2:0, FFmpeg's definitions; RGB PSNR as
a second figure for the neural output). Alignment is checked before any number is computed:
the clip must have the card's frame count at the card's frame rate (timestamps within half a
frame), and each decoded codec stream must give back as many frames as went in.

Memory: every stream shown side by side (``original``, ``neural``, ``h264``, ``h265``) is kept
as YUV 4:2:0 planes, 1.5 bytes per pixel (the 132 frames of a 1280x720 clip: 182 MB per stream,
730 MB for four, instead of 1.46 GB as RGB); ``frame_rgb(key, i)`` converts one frame for display
(libswscale, as a player shows it). These planes are exactly what the metrics compare. The codec
streams at the other RD sizes keep only their bitstream (decoded again on demand by
``EncodedClip.decoded``).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loupe.base.errors import LoupeError
from loupe.base.media import resolve_clip
from loupe.base.progress import Progress, as_progress
from loupe.base.quality import (
    AlignmentError,
    Planes,
    check_aligned,
    frame_metrics,
    json_safe,
    pool,
    probe,
    rgb_frame_metrics,
    rgb_to_yuv420,
    yuv420_to_rgb,
)
from loupe.run.codecs import CODECS, EncodedClip, encode_matched_yuv
from loupe.tasks.compression import CompressionSpec, output_to_rgb


class ReportError(LoupeError, ValueError):
    """The report cannot be built as asked (e.g. an unknown codec); one line for the user."""


@dataclass
class MethodResult:
    """One way of coding the clip at the neural model's bits."""

    key: str  # "neural" | "h264" | "h265"
    label: str
    bits: int
    bpp: float
    frames: list[dict[str, float]]  # frame_metrics() keys (+ psnr_rgb, mse_rgb for the neural output)
    pooled: dict[str, float]
    matched: bool = True  # codecs: size within tolerance of the neural bits
    encoded: EncodedClip | None = None
    note: str = ""

    @property
    def psnr(self) -> list[float]:
        return [f["psnr_all"] for f in self.frames]

    @property
    def ssim(self) -> list[float]:
        return [f["ssim_all"] for f in self.frames]

    def worst(self, n: int = 5) -> list[int]:
        """Indices of the n frames with the lowest PSNR (YUV), worst first."""
        order = sorted(range(len(self.frames)), key=lambda i: (self.frames[i]["psnr_all"], i))
        return order[:n]


@dataclass
class RDPoint:
    method: str
    label: str
    size_factor: float  # relative to the neural model's bits
    bits: int
    bpp: float
    psnr_pooled: float
    psnr_mean: float
    ssim_mean: float
    matched: bool
    crf: float | None = None


@dataclass
class CompressionReport:
    clip: str
    model: str
    model_label: str
    frames: int
    size: tuple[int, int]  # H, W of the compared frames
    fps: float
    # "neural", then each codec at the neural bits ("h264", "h265"), then the codecs at the other
    # RD sizes as "h264@0.5", "h264@2", ... (per-frame figures too; only their bitstream is kept)
    methods: dict[str, MethodResult]
    rd: list[RDPoint]
    timestamps: list[float]
    seconds: float
    _yuv: dict[str, list[Planes]] = field(default_factory=dict, repr=False)

    @property
    def keys(self) -> list[str]:
        """Streams that can be shown: "original", "neural", then the codecs at matched bits."""
        return list(self._yuv)

    streams = keys

    @property
    def frame_count(self) -> int:
        return self.frames

    @property
    def matched_methods(self) -> list[str]:
        """"neural" and the codecs at the neural bits (no "@" sizes)."""
        return [k for k in self.methods if "@" not in k]

    # --- per-method accessors (the panel reads the report through these) ------------------
    def per_frame(self, method: str, metric: str) -> list[float]:
        """Per-frame values: metric "psnr" (YUV all), "ssim" (YUV All), "psnr_rgb" (neural), or
        any ``frame_metrics`` key (psnr_y, ssim_u, mse_all, ...)."""
        key = {"psnr": "psnr_all", "ssim": "ssim_all"}.get(metric, metric)
        return [f.get(key, math.nan) for f in self.methods[method].frames]

    def pooled(self, method: str) -> dict[str, float]:
        """Pooled figures of a method, with bits, bpp and (neural) psnr_rgb = the pooled RGB PSNR."""
        m = self.methods[method]
        out = dict(m.pooled)
        out.update(bits=m.bits, bpp=m.bpp)
        if "psnr_rgb_pooled" in out:
            out["psnr_rgb"] = out["psnr_rgb_pooled"]
        return out

    def bpp(self, method: str) -> float:
        return self.methods[method].bpp

    def worst(self, method: str, n: int = 5) -> list[tuple[int, float]]:
        """(frame index, PSNR) of the n lowest-PSNR frames of a method, worst first."""
        m = self.methods[method]
        return [(i, m.frames[i]["psnr_all"]) for i in m.worst(n)]

    def frame(self, stream: str, i: int) -> np.ndarray:
        """``frame_rgb``; KeyError for a stream that is not kept (the "@" sizes)."""
        return self.frame_rgb(stream, i)

    def frame_yuv(self, key: str, i: int) -> Planes:
        return self._yuv[key][i]

    def frame_rgb(self, key: str, i: int) -> np.ndarray:
        """Frame i of a stream as H x W x 3 uint8 RGB for display."""
        return yuv420_to_rgb(self._yuv[key][i])

    def label(self, key: str) -> str:
        return "Original" if key == "original" else self.methods[key].label

    def worst_frames(self, n: int = 5) -> dict[str, list[int]]:
        return {k: self.methods[k].worst(n) for k in self.matched_methods}

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (inf -> null)."""
        return json_safe({
            "clip": self.clip, "model": self.model, "frames": self.frames, "size": list(self.size), "fps": self.fps,
            "methods": {k: {"label": m.label, "bits": m.bits, "bpp": m.bpp, "matched": m.matched, "note": m.note,
                            **m.pooled, "worst_frames": m.worst(5),
                            **({"codec": m.encoded.summary()} if m.encoded is not None else {})}
                        for k, m in self.methods.items()},
            "rd": [vars(p) for p in self.rd],
            "seconds": self.seconds,
        }, 6)

    def to_csv(self, path: str | Path) -> Path:
        """Per-frame rows: frame, timestamp, then psnr/ssim (YUV) per method (the "@" RD sizes
        included), the neural RGB PSNR and bpp per method; empty cells for infinite PSNR. The pooled figures follow as rows whose
        ``frame`` is ``pooled`` / ``mean``."""
        p = Path(path)
        cols = ["frame", "timestamp_s"]
        for k in self.methods:
            cols += [f"psnr_{k}", f"ssim_{k}"]
        cols += ["psnr_rgb_neural"]
        cols += [f"bpp_{k}" for k in self.methods]

        def num(x: float, digits: int) -> Any:
            return "" if x is None or not math.isfinite(x) else round(float(x), digits)

        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(cols)
            neural = self.methods.get("neural")
            for i in range(self.frames):
                row: list[Any] = [i, round(self.timestamps[i], 6)]
                for m in self.methods.values():
                    row += [num(m.frames[i]["psnr_all"], 4), num(m.frames[i]["ssim_all"], 6)]
                row.append(num(neural.frames[i].get("psnr_rgb", math.nan), 4) if neural else "")
                row += [num(m.bpp, 6) for m in self.methods.values()]
                w.writerow(row)
            for tag, pk, sk in (("pooled", "psnr_pooled", "ssim_mean"), ("mean", "psnr_mean", "ssim_mean")):
                row = [tag, ""]
                for m in self.methods.values():
                    row += [num(m.pooled[pk], 4), num(m.pooled[sk], 6)]
                rgb_key = "psnr_rgb_pooled" if tag == "pooled" else "psnr_rgb_mean"
                row.append(num(neural.pooled.get(rgb_key, math.nan), 4) if neural else "")
                row += [num(m.bpp, 6) for m in self.methods.values()]
                w.writerow(row)
        return p

    def rd_to_csv(self, path: str | Path) -> Path:
        p = Path(path)
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["method", "size_factor", "bits", "bpp", "psnr_pooled", "psnr_mean", "ssim_mean", "matched", "crf"])
            for r in self.rd:
                w.writerow([r.method, r.size_factor, r.bits, round(r.bpp, 6), round(r.psnr_pooled, 4),
                            round(r.psnr_mean, 4), round(r.ssim_mean, 6), int(r.matched), r.crf if r.crf is not None else ""])
        return p


def build_report(model: Any, clip: str | Path, *, codecs: Sequence[str] = ("h264", "h265"),
                 sizes: Sequence[float] = (0.5, 1.0, 2.0), progress: Progress | None = None,
                 preset: str = "medium",
                 providers: str = "auto", max_frames: int | None = None, tolerance: float = 0.05) -> CompressionReport:
    """Score a compression model against H.264/H.265 at matched bits (see the module docstring).

    ``model``: a path to the ONNX or a ``loupe.inference.engine.Engine``. ``clip``: a path or the
    name of a shipped clip. ``sizes``: codec sizes relative to the model's bits for the RD plot
    (1.0, the matched size, is always included). ``progress`` is updated with what runs and
    checked between frames and encodes (``loupe.base.progress.Cancelled``). ``max_frames``: compare only
    the first N frames of model and clip (both cut alike). Raises AlignmentError, ModelError,
    VideoReadError/SourceError, CodecError with one-line messages."""
    from loupe.inference.engine import Engine, ModelError
    from loupe.sources.video import VideoSource

    t0 = time.perf_counter()
    progress = as_progress(progress)

    engine = model if isinstance(model, Engine) else Engine(model, providers=providers)
    if engine.card.task != "compression":
        raise ModelError(f"{engine.path.name} is a {engine.card.task} model, not a compression model")
    spec = CompressionSpec.from_card(engine.card, engine.path.name)
    if spec.bits is None:
        raise ModelError(f"{engine.path.name}: the card gives no 'bits'; codecs cannot be matched to it")
    for c in codecs:
        if c not in CODECS:
            raise ReportError(f"unknown codec {c!r}; one of {', '.join(CODECS)}")
    clip_p = resolve_clip(clip)
    n = spec.frames if max_frames is None else min(spec.frames, int(max_frames))

    # --- alignment before any number -----------------------------------------------------
    info = probe(clip_p)
    clip_pts = list(info.pts)
    if max_frames is None and info.frames != spec.frames:
        raise AlignmentError(f"the model decodes {spec.frames} frames, {clip_p.name} has {info.frames}: "
                             "they must have the same count")
    if len(clip_pts) < n:
        raise AlignmentError(f"{clip_p.name} has {len(clip_pts)} frames, fewer than the {n} to compare")
    clip_pts = clip_pts[:n]
    fps = spec.fps or info.fps or 25.0
    model_pts = [clip_pts[0] + i / fps for i in range(n)]
    check_aligned(clip_pts, model_pts, fps=fps, names=(clip_p.name, f"{engine.path.name} at {fps:g} frames/s"))

    # --- the neural model over every frame -------------------------------------------------
    input_name = engine.inputs[0].name
    out_names = [o.name for o in engine.outputs]
    out_idx = out_names.index("frame") if "frame" in out_names else 0
    target_yuv: list[Planes] = []
    neural_yuv: list[Planes] = []
    neural_frames: list[dict[str, float]] = []
    progress.update(0.0, f"running {engine.path.name} on {clip_p.name}")
    w_neural = 0.3
    with VideoSource(str(clip_p)) as src:
        for frame in src:
            i = frame.index
            if i >= n:
                break
            progress.check()
            try:
                target = spec.target(np.asarray(frame.pixels))
            except ValueError as e:
                raise AlignmentError(f"{clip_p.name}: {e}") from None
            out = engine.run({input_name: np.array([i], dtype=np.int64)})[out_idx]
            recon = output_to_rgb(out, spec.size, engine.path.name)
            ty, ry = rgb_to_yuv420(target), rgb_to_yuv420(recon)
            m = rgb_frame_metrics(target, recon, ty, ry)
            target_yuv.append(ty)
            neural_yuv.append(ry)
            neural_frames.append(m)
            progress.update(w_neural * (i + 1) / n, f"{engine.path.name}: frame {i + 1}/{n}")
    if len(neural_frames) != n:
        raise AlignmentError(f"{clip_p.name} decoded to {len(neural_frames)} frames, {n} expected")
    frame_px = spec.size[0] * spec.size[1]
    bits = int(spec.bits) if n == spec.frames else round(spec.bits * n / spec.frames)
    label = str(engine.card.source.get("architecture") or engine.card.name or "neural")
    methods: dict[str, MethodResult] = {
        "neural": MethodResult("neural", label, bits, bits / (n * frame_px), neural_frames, pool(neural_frames),
                               note="bits from the card (the entropy-coded representation, decoder included)"
                               + (f"; scaled to {n} of {spec.frames} frames" if n < spec.frames else "")),
    }
    rd: list[RDPoint] = [RDPoint("neural", label, 1.0, bits, bits / (n * frame_px), methods["neural"].pooled["psnr_pooled"],
                                 methods["neural"].pooled["psnr_mean"], methods["neural"].pooled["ssim_mean"], True)]
    yuv: dict[str, list[Planes]] = {"original": target_yuv, "neural": neural_yuv}

    # --- reference codecs ------------------------------------------------------------------
    # the matched size first: its CRF is the starting guess at the other sizes (~6 CRF per halving)
    factors = [1.0, *sorted({float(s) for s in sizes} - {1.0})]
    others: dict[str, MethodResult] = {}
    jobs = [(c, f) for c in codecs for f in factors]
    found: dict[str, tuple[float, int]] = {}  # codec -> (crf, bytes) at the matched size
    for k, (codec, factor) in enumerate(jobs):
        progress.check()
        base = w_neural + (1 - w_neural) * k / len(jobs)
        span = (1 - w_neural) / len(jobs)
        name = CODECS[codec][2]
        progress.update(base, f"{name} at {factor:g}x the neural size")
        sub = progress.part(base, base + span)

        target = max(1, round(bits * factor / 8))
        start = 23.0
        if codec in found:
            start = found[codec][0] + 6.0 * math.log2(found[codec][1] / target)
        enc = encode_matched_yuv(target_yuv, fps, codec, target, tolerance, sub, preset=preset, crf_start=start)
        if factor == 1.0 and enc.crf is not None:
            found[codec] = (enc.crf, enc.bytes)
        dec = enc.decoded
        if len(dec) != n:
            raise AlignmentError(f"{name} decoded {len(dec)} frames, {n} went in")
        check_aligned(clip_pts, [clip_pts[0] + i / fps for i in range(len(dec))], fps=fps, names=(clip_p.name, name))
        frames = [frame_metrics(a, b) for a, b in zip(target_yuv, dec)]
        pooled = pool(frames)
        rd.append(RDPoint(codec, name, factor, enc.bits, enc.bpp, pooled["psnr_pooled"], pooled["psnr_mean"],
                          pooled["ssim_mean"], enc.matched, enc.crf))
        note = "" if enc.matched else (f"could not get within {tolerance:.0%} of {target} bytes: "
                                       f"closest was {enc.bytes} bytes")
        if factor == 1.0:
            methods[codec] = MethodResult(codec, name, enc.bits, enc.bpp, frames, pooled, enc.matched, enc, note)
            yuv[codec] = dec
        else:
            others[f"{codec}@{factor:g}"] = MethodResult(f"{codec}@{factor:g}", f"{name} ({factor:g}x)", enc.bits,
                                                         enc.bpp, frames, pooled, enc.matched, enc, note)
            enc.release()  # keep the bitstream only
    methods.update(others)
    rd.sort(key=lambda p: (p.method != "neural", p.method, p.size_factor))
    progress.update(1.0, "done")
    return CompressionReport(
        clip=str(clip_p), model=str(engine.path), model_label=label, frames=n, size=spec.size, fps=float(fps),
        methods=methods, rd=rd, timestamps=[t - clip_pts[0] for t in clip_pts], seconds=time.perf_counter() - t0,
        _yuv=yuv,
    )
