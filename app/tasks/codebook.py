"""Vector-quantised bottlenecks: which codebook entry fires where (Qt-free).

A codebook model (VQ-VAE / VQ-VAE-2 encoders, Codebook-Features-style layers, a VQ model fitted
by Loupe) outputs, per level, the index of the code chosen at each position: ``1 x h x w`` int64,
or ``1 x h x w x k`` for k active codes per position (most active first). It may also output its
reconstruction (``1 x 3 x H x W`` float). Card ``loupe.output``::

    {"levels": [{"name": "top", "output": "codes_top", "codebook_size": 512, "stride": 8, "k": 1}, ...],
     "reconstruction": {"output": "recon", "scale": 0.5, "offset": 0.5} | null}

Per frame and level the result holds the code map at the model's own resolution (cropped to the
frame when the input was padded), the frame's usage histogram (a bincount over the codebook; with
k codes per position every active code counts), the number of codes used and the perplexity
``exp(H)``, H the entropy (nats) of the frame's code distribution — the number of equally used
codes that would give the same entropy. Dead codes can only be judged over many frames:
``CodebookUsage`` adds the histograms up over a session. The map sent to the view is the first
(most active) code per position, upsampled by nearest neighbour to display resolution; each code
has one colour for ever (``code_palette``), applied through a lookup table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from loupe.base.quality import json_number, psnr_rgb
from loupe.inference.engine import Engine, ModelError
from loupe.inference.preprocess import Geometry, display_rgb, prepare
from loupe.sources.base import Frame
from loupe.tasks.base import ModelTask

GOLDEN = 0.6180339887498949
_NAME = re.compile(r"^[A-Za-z0-9_]+$")


# --- colours -------------------------------------------------------------------------------
def _hls_to_rgb(h: np.ndarray, lum: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Vectorised HLS (all in [0, 1]) -> RGB in [0, 1], n x 3."""
    c = (1.0 - np.abs(2.0 * lum - 1.0)) * s
    hp = (h % 1.0) * 6.0
    x = c * (1.0 - np.abs(hp % 2.0 - 1.0))
    z = np.zeros_like(c)
    sector = np.floor(hp).astype(int) % 6
    r = np.choose(sector, [c, x, z, z, x, c])
    g = np.choose(sector, [x, c, c, x, z, z])
    b = np.choose(sector, [z, z, x, c, c, x])
    m = lum - c / 2.0
    return np.stack([r + m, g + m, b + m], axis=1)


def code_palette(n: int) -> np.ndarray:
    """n x 3 uint8: the colour of codes 0..n-1. Code i's colour depends on i alone (golden-ratio
    hue steps; lightness cycling over three values and saturation over two), so a code has the
    same colour in every frame, level, model and session."""
    i = np.arange(int(n), dtype=np.float64)
    hue = (i * GOLDEN) % 1.0
    lum = np.array([0.55, 0.38, 0.72])[np.arange(int(n)) % 3]
    sat = np.array([0.90, 0.65])[(np.arange(int(n)) // 3) % 2]
    return np.clip(np.round(_hls_to_rgb(hue, lum, sat) * 255.0), 0, 255).astype(np.uint8)


# --- statistics ----------------------------------------------------------------------------
def perplexity(counts: np.ndarray) -> float:
    """exp of the entropy (nats) of the distribution given by ``counts``; 0 for no counts."""
    c = np.asarray(counts, np.float64)
    total = c.sum()
    if total <= 0:
        return 0.0
    p = c[c > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


# --- the result ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelCodes:
    """One level of one frame.

    codes: int32 h x w (or h x w x k) code indices at the model's resolution, covering the frame;
    display: uint16 (int32 for codebooks over 65536) H x W first code per pixel at display
    resolution; histogram: int64 counts per code (length codebook_size); cell: frame pixels per
    code position (rows, cols)."""

    name: str
    codebook_size: int
    k: int
    codes: np.ndarray
    display: np.ndarray
    histogram: np.ndarray
    codes_used: int
    perplexity: float
    cell: tuple[float, float]

    def __post_init__(self) -> None:
        if self.codes.dtype != np.int32 or self.codes.ndim not in (2, 3):
            raise ValueError(f"codes must be int32 h x w (x k), got {self.codes.dtype} {self.codes.shape}")
        if self.display.ndim != 2 or self.display.dtype not in (np.uint16, np.int32):
            raise ValueError(f"display must be 2-d uint16/int32, got {self.display.dtype} {self.display.shape}")
        if self.histogram.shape != (self.codebook_size,):
            raise ValueError(f"histogram must have shape ({self.codebook_size},), got {self.histogram.shape}")

    def codes_at(self, x: float, y: float) -> tuple[int, int, tuple[int, ...]] | None:
        """(row, col, codes) of the code position under frame pixel (x, y); None outside the frame."""
        if x < 0 or y < 0:
            return None
        r, c = int(y // self.cell[0]), int(x // self.cell[1])
        if r >= self.codes.shape[0] or c >= self.codes.shape[1]:
            return None
        v = self.codes[r, c]
        return r, c, tuple(int(t) for t in np.atleast_1d(v))


@dataclass(frozen=True)
class CodebookResult:
    """levels: per card level; reconstruction: uint8 RGB H x W x 3 (cropped to the frame) or None;
    recon_psnr: 8-bit RGB PSNR (dB) of the reconstruction against the frame, or None."""

    levels: tuple[LevelCodes, ...]
    frame_hw: tuple[int, int]
    reconstruction: np.ndarray | None = None
    recon_psnr: float | None = None

    def __post_init__(self) -> None:
        r = self.reconstruction
        if r is not None and (r.dtype != np.uint8 or r.ndim != 3 or r.shape[2] != 3):
            raise ValueError(f"reconstruction must be H x W x 3 uint8, got {r.dtype} {r.shape}")

    def level(self, name: str) -> LevelCodes:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(name)


@dataclass(frozen=True)
class CodebookContext:
    geometry: Geometry
    rgb: np.ndarray | None  # the frame as RGB uint8, kept only to score the reconstruction


@dataclass(frozen=True)
class LevelSpec:
    name: str
    output: str
    codebook_size: int
    stride: int | None
    k: int


class CodebookUsage:
    """Code usage over a session: the frames' histograms added up, each frame index once (a
    replayed or re-seeked frame does not count twice). Dead codes = codes never used so far."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = dict(sizes)
        self.reset()

    def reset(self) -> None:
        self.counts = {n: np.zeros(s, np.int64) for n, s in self.sizes.items()}
        self.frames = 0
        self._seen: set[int] = set()

    def add(self, result: CodebookResult, index: int | None = None) -> bool:
        """Count a frame's codes; False (nothing counted) when frame ``index`` was counted before."""
        if index is not None:
            if index in self._seen:
                return False
            self._seen.add(index)
        for lv in result.levels:
            acc = self.counts.get(lv.name)
            if acc is not None and acc.shape == lv.histogram.shape:
                acc += lv.histogram
        self.frames += 1
        return True

    def used(self, name: str) -> int:
        return int(np.count_nonzero(self.counts[name]))

    def dead_pct(self, name: str) -> float:
        """% of the codebook never used in the frames counted so far."""
        n = self.sizes[name]
        return 100.0 * (n - self.used(name)) / n if n else 0.0

    def perplexity(self, name: str) -> float:
        return perplexity(self.counts[name])

    def order(self, name: str) -> np.ndarray:
        """Code ids sorted by session use, most used first (ties by id)."""
        return np.argsort(-self.counts[name], kind="stable")


# --- the task ----------------------------------------------------------------------------------
def column_names(level: str) -> tuple[str, str]:
    return f"codes_used_{level}", f"perplexity_{level}"


def _int(value: Any, what: str, model: str, minimum: int = 1) -> int:
    try:
        v = int(value)
        if v != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ModelError(f"{model}: loupe.output {what} must be an integer, got {value!r}") from None
    if v < minimum:
        raise ModelError(f"{model}: loupe.output {what} must be >= {minimum}, got {v}")
    return v


class CodebookTask(ModelTask):
    name = "codebook"
    history = 0  # each frame on its own (the index cache depends on shapes only)

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        super().__init__(engine, display_max_side)
        model = engine.path.name
        out = self.card.output
        names = [o.name for o in engine.outputs]
        levels = out.get("levels")
        if not isinstance(levels, list) or not levels:
            raise ModelError(
                f"{model}: the codebook card has no loupe.output 'levels' list (each level names its "
                "output, codebook_size and stride)"
            )
        specs: list[LevelSpec] = []
        for i, lv in enumerate(levels):
            if not isinstance(lv, dict):
                raise ModelError(f"{model}: loupe.output levels[{i}] must be an object")
            name = str(lv.get("name", f"level{i}"))
            if not _NAME.match(name):
                raise ModelError(f"{model}: level name {name!r} must be a short ASCII id (letters, digits, _)")
            if any(s.name == name for s in specs):
                raise ModelError(f"{model}: two levels are named {name!r}")
            output = lv.get("output")
            if output not in names:
                raise ModelError(
                    f"{model}: level {name!r} reads output {output!r}, which the model does not have "
                    f"(outputs: {', '.join(names)})"
                )
            info = engine.outputs[names.index(output)]
            if "int" not in info.dtype:
                raise ModelError(f"{model}: output {output!r} is {info.dtype}; code indices must be integers")
            k = _int(lv.get("k", 1), f"levels[{i}].k", model)
            rank = len(info.shape)
            if rank and (rank not in (3, 4) or (k > 1 and rank != 4)):
                want = "1 x h x w" if k == 1 else f"1 x h x w x {k}"
                raise ModelError(f"{model}: output {output!r} has rank {rank}; level {name!r} needs {want} codes")
            stride = lv.get("stride")
            specs.append(LevelSpec(
                name, output, _int(lv.get("codebook_size"), f"levels[{i}].codebook_size", model),
                None if stride is None else _int(stride, f"levels[{i}].stride", model), k,
            ))
        self.levels: tuple[LevelSpec, ...] = tuple(specs)
        self._index = {s.name: names.index(s.output) for s in specs}
        rec = out.get("reconstruction")
        self.recon_index: int | None = None
        self.recon_scale, self.recon_offset = 1.0, 0.0
        if rec:
            if not isinstance(rec, dict) or rec.get("output") not in names:
                raise ModelError(
                    f"{model}: the reconstruction output {rec.get('output') if isinstance(rec, dict) else rec!r} "
                    f"is not among the model's outputs ({', '.join(names)})"
                )
            self.recon_index = names.index(rec["output"])
            self.recon_name = str(rec["output"])
            self.recon_scale = float(rec.get("scale", 1.0))
            self.recon_offset = float(rec.get("offset", 0.0))
        self.palette = {s.name: code_palette(s.codebook_size) for s in specs}
        self._maps: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    # --- prepare ------------------------------------------------------------------------------
    def prepare(self, frame: Frame) -> tuple[dict[str, np.ndarray], CodebookContext]:
        x, geo = prepare(frame, self.card.input)
        rgb = display_rgb(frame) if self.recon_index is not None else None
        return {self.input_name: x}, CodebookContext(geo, rgb)

    # --- postprocess -----------------------------------------------------------------------
    def _codes(self, spec: LevelSpec, raw: np.ndarray) -> np.ndarray:
        model = self.model_name
        a = np.asarray(raw)
        want = "1 x h x w" if spec.k == 1 else f"1 x h x w x {spec.k}"
        if not np.issubdtype(a.dtype, np.integer):
            raise ModelError(f"{model}: output {spec.output!r} is {a.dtype}; level {spec.name!r} needs integer codes")
        if a.ndim == 4 and spec.k == 1 and a.shape[3] == 1:
            a = a[..., 0]
        if a.ndim != (3 if spec.k == 1 else 4) or a.shape[0] != 1 or (spec.k > 1 and a.shape[3] != spec.k):
            raise ModelError(f"{model}: output {spec.output!r} has shape {tuple(a.shape)}; level {spec.name!r} needs {want}")
        a = a[0]
        if a.size == 0:
            raise ModelError(f"{model}: output {spec.output!r} is empty (shape {tuple(np.shape(raw))})")
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= spec.codebook_size:
            bad = lo if lo < 0 else hi
            raise ModelError(
                f"{model}: output {spec.output!r} holds code {bad}, outside [0, {spec.codebook_size}) "
                f"(level {spec.name!r}, codebook_size {spec.codebook_size})"
            )
        return a

    def _display_index(self, geo: Geometry, full_hw: tuple[int, int], kept_hw: tuple[int, int],
                       disp_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Row and column gather indices: display pixel -> code position (nearest, by centre)."""
        key = (geo, full_hw, kept_hw, disp_hw)
        hit = self._maps.get(key)
        if hit is None:
            fh, fw = geo.frame_hw
            base_h, base_w = geo.input_hw if geo.mode == "pad" else geo.frame_hw
            idx = []
            for n_disp, n_frame, n_out, n_base, n_kept in (
                (disp_hw[0], fh, full_hw[0], base_h, kept_hw[0]),
                (disp_hw[1], fw, full_hw[1], base_w, kept_hw[1]),
            ):
                centre = (np.arange(n_disp) + 0.5) * (n_frame / n_disp)  # frame pixels
                idx.append(np.clip(np.floor(centre * n_out / n_base).astype(np.intp), 0, n_kept - 1))
            hit = self._maps[key] = (idx[0], idx[1])
            if len(self._maps) > 16:
                self._maps.pop(next(iter(self._maps)))
        return hit

    def postprocess(self, outputs: list[np.ndarray], ctx: CodebookContext | Geometry) -> CodebookResult:
        geo, rgb = (ctx.geometry, ctx.rgb) if isinstance(ctx, CodebookContext) else (ctx, None)
        disp_hw = self.display_hw(geo)
        levels = []
        for spec in self.levels:
            a = self._codes(spec, outputs[self._index[spec.name]])
            full_hw = (int(a.shape[0]), int(a.shape[1]))
            if geo.mode == "pad":
                rh, rw = geo.crop_output(full_hw)
                a = a[:rh, :rw]
            codes = np.ascontiguousarray(a, dtype=np.int32)
            hist = np.bincount(codes.ravel(), minlength=spec.codebook_size).astype(np.int64)
            first = codes if codes.ndim == 2 else codes[:, :, 0]
            rows, cols = self._display_index(geo, full_hw, first.shape, disp_hw)
            dtype = np.uint16 if spec.codebook_size <= 65536 else np.int32
            display = first.astype(dtype).take(rows, axis=0).take(cols, axis=1)  # 4x faster than a 2-d gather
            base_h, base_w = geo.input_hw if geo.mode == "pad" else geo.frame_hw
            cell = (base_h / full_hw[0], base_w / full_hw[1])  # frame pixels per code position
            levels.append(LevelCodes(
                spec.name, spec.codebook_size, spec.k, codes, display, hist,
                int(np.count_nonzero(hist)), perplexity(hist), cell,
            ))
        recon, psnr = None, None
        if self.recon_index is not None:
            recon = self._reconstruction(outputs[self.recon_index], geo)
            if rgb is not None:
                ref = rgb if recon.shape[:2] == rgb.shape[:2] else cv2.resize(
                    np.ascontiguousarray(rgb), (recon.shape[1], recon.shape[0]), interpolation=cv2.INTER_AREA)
                psnr = psnr_rgb(np.ascontiguousarray(ref), recon)  # inf for an exact reconstruction
        return CodebookResult(tuple(levels), geo.frame_hw, recon, psnr)

    def _reconstruction(self, raw: np.ndarray, geo: Geometry) -> np.ndarray:
        model = self.model_name
        r = np.asarray(raw)
        if r.ndim != 4 or r.shape[0] != 1 or r.shape[1] != 3 or not np.issubdtype(r.dtype, np.floating):
            raise ModelError(
                f"{model}: reconstruction output {self.recon_name!r} has shape {tuple(r.shape)} {r.dtype}; "
                "expected float 1 x 3 x H x W"
            )
        r = r[0]
        if geo.mode == "pad":
            rh, rw = geo.crop_output(r.shape[1:])
            r = r[:, :rh, :rw]
        a, b = self.recon_scale * 255.0, self.recon_offset * 255.0
        planes = []
        for ch in r:  # per plane: saturating round(x * a + b) in one OpenCV pass
            ch = np.ascontiguousarray(ch, dtype=np.float32)
            planes.append(cv2.addWeighted(ch, a, ch, 0.0, b, dtype=cv2.CV_8U))
        return cv2.merge(planes)

    # --- analyze --------------------------------------------------------------------------
    def columns(self) -> list[str]:
        cols = [c for s in self.levels for c in column_names(s.name)]
        if self.recon_index is not None:
            cols.append("recon_psnr")
        return cols

    def row(self, result: CodebookResult) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for lv in result.levels:
            used, ppl = column_names(lv.name)
            out[used] = lv.codes_used
            out[ppl] = round(lv.perplexity, 4)
        if self.recon_index is not None:
            out["recon_psnr"] = json_number(result.recon_psnr, 4)  # inf (exact) -> empty cell / null
        return out
