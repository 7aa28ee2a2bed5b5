"""Benchmark: frame-level ROC AUC of an anomaly model on anomalies injected into real footage.

Three test clips are made from the held-out part of one normal shot (default: all of
carphone_pristine.mp4, 176x144; ``--clip bikes``: one steady shot of bikes.mp4 at 320x136), each
with one injected span of frames (ground truth 1 inside it, 0 elsewhere):

- ``pasted``: frames of bigbuckbunny.mp4, resized, pasted into the top-right corner;
- ``against-flow``: a textured patch cut from bigbuckbunny.mp4 moving against the dominant
  motion of the shot (the median optical flow of its moving pixels);
- ``frozen``: the frame before the span repeated for the whole span (a freeze).

Clips are written losslessly (FFV1, RGB, .mkv) and scored through the app's own code
(``loupe.run.analyze.analyze`` with ``loupe.run.pipeline.load_model``) with the card calibration and with
``calibrate_per_video=True``, and by a model-free baseline: the mean absolute difference between
frame t and t-1, min-max normalised per video. Printed: ROC AUC per anomaly type (rank-based
Mann-Whitney, ties count 1/2), a two-sided variant (distance of the PSNR / difference from its
per-video median: a freeze is anomalous by being *too* regular), and whether each span is flagged.

The model: ``--model M.onnx``; else ``resources/demo_anomaly.onnx`` if present; else one fitted
by ``python -m loupe_models.fit_anomaly`` on the shot's normal part (frames that no test clip
uses) within ``--fit-minutes``; else (or if fitting fails) the copy-last-frame predictor of
tests/helpers.py, calibrated on the normal part. The output says which.

    python bench/anomaly_auc.py [--clip carphone|bikes] [--frames N] [--model M.onnx]
                                [--fit-minutes M] [--keep DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # for tests.helpers (the copy-last fallback)
    sys.path.insert(0, str(REPO))

from loupe.base.media import clip_path  # noqa: E402
from loupe.run.analyze import RowWriter, analyze, columns_for  # noqa: E402
from loupe.run.pipeline import LoadedModel, load_model  # noqa: E402
from loupe.sources.open import open_source  # noqa: E402
from loupe.tasks.anomaly import calibrate  # noqa: E402

KINDS = ("pasted", "against-flow", "frozen")
DONOR = "bigbuckbunny.mp4"
DONOR_START = 30  # bigbuckbunny frames 30.. move (pasted); the patch is cut from frame DONOR_PATCH
DONOR_PATCH = 12


@dataclass(frozen=True)
class Base:
    """A normal shot: frames [shot_start, shot_end) of ``clip``; [shot_start, train_end) is the
    normal part a model may be fitted on, [train_end, shot_end) the test part."""

    clip: str
    shot_start: int
    train_end: int
    shot_end: int
    size: tuple[int, int] | None = None  # (w, h) to resize to, None = as is


BASES = {
    "carphone": Base("carphone_pristine.mp4", 0, 50, 120),
    # bikes.mp4 cuts at about frames 30, 76, 137, 187, 242: the last shot pans slowly
    "bikes": Base("bikes.mp4", 188, 208, 241, (320, 136)),
}


# --- the measure ---------------------------------------------------------------------------
def midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x``; tied values share the mean of their ranks."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), np.float64)
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve = P(score of an anomalous frame > score of a normal one), ties
    counting 1/2 (Mann-Whitney U / (n_pos n_neg)). NaN when either class is empty."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if np.isnan(s).any():
        raise ValueError("scores hold NaN")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = midranks(s)
    u = r[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def minmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)


def two_sided(x: np.ndarray) -> np.ndarray:
    """Distance from the per-video median: too regular and too irregular both score high."""
    x = np.asarray(x, np.float64)
    return np.abs(x - np.median(x))


# --- footage -------------------------------------------------------------------------------
def read_frames(path: str | Path, start: int = 0, stop: int | None = None,
                size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """RGB uint8 frames [start, stop) of a file, decoded by the app's own source."""
    src = open_source(str(path))
    out: list[np.ndarray] = []
    try:
        for f in src:
            if stop is not None and f.index >= stop:
                break
            if f.index >= start:
                px = f.pixels
                if size is not None and (px.shape[1], px.shape[0]) != size:
                    px = cv2.resize(px, size, interpolation=cv2.INTER_AREA)
                out.append(np.ascontiguousarray(px))
    finally:
        src.close()
    return out


def write_clip(path: Path, frames: list[np.ndarray], fps: Fraction = Fraction(25)) -> Path:
    """Lossless RGB video (FFV1 in Matroska): decoding gives back the exact pixels."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "bgr0"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def dominant_flow(frames: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Median optical flow (px/frame, x right, y down) of the pixels that move (> 0.5 px),
    and the fraction of pixels that move."""
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    moving, n = [], 0
    for a, b in zip(gray, gray[1:]):
        fl = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0).reshape(-1, 2)
        n += len(fl)
        moving.append(fl[np.linalg.norm(fl, axis=1) > 0.5])
    m = np.concatenate(moving) if moving else np.zeros((0, 2), np.float32)
    frac = len(m) / max(n, 1)
    return (np.median(m, axis=0) if len(m) else np.zeros(2)), frac


def textured_patch(img: np.ndarray, side: int) -> np.ndarray:
    """The side x side crop of ``img`` with the most texture (variance of the Laplacian)."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    best, best_v = (0, 0), -1.0
    for y in range(0, h - side + 1, max(side // 2, 1)):
        for x in range(0, w - side + 1, max(side // 2, 1)):
            v = float(cv2.Laplacian(gray[y:y + side, x:x + side], cv2.CV_64F).var())
            if v > best_v:
                best, best_v = (y, x), v
    y, x = best
    return img[y:y + side, x:x + side].copy()


# --- injections ----------------------------------------------------------------------------
def inject_pasted(frames: list[np.ndarray], span: range, donor: list[np.ndarray]) -> list[np.ndarray]:
    """Donor frames (resized, 16:9) pasted into the top-right corner, one per span frame."""
    h, w = frames[0].shape[:2]
    pw = max(8, round(w * 0.45))
    ph = min(max(8, round(pw * donor[0].shape[0] / donor[0].shape[1])), h - 8)
    out = [f.copy() for f in frames]
    for k, t in enumerate(span):
        d = cv2.resize(donor[k % len(donor)], (pw, ph), interpolation=cv2.INTER_AREA)
        out[t][4:4 + ph, w - 4 - pw:w - 4] = d
    return out


def inject_against_flow(frames: list[np.ndarray], span: range, patch: np.ndarray,
                        direction: np.ndarray, speed: float) -> list[np.ndarray]:
    """``patch`` moving at ``speed`` px/frame along ``direction`` during the span, its path
    centred on the frame centre (clamped to the frame)."""
    h, w = frames[0].shape[:2]
    ph, pw = patch.shape[:2]
    d = direction / (np.linalg.norm(direction) or 1.0)
    centre = np.array([(w - pw) / 2.0, (h - ph) / 2.0])
    travel = speed * (len(span) - 1)
    out = [f.copy() for f in frames]
    for k, t in enumerate(span):
        x, y = centre - d * travel / 2.0 + d * speed * k
        x = int(np.clip(np.rint(x), 0, w - pw))
        y = int(np.clip(np.rint(y), 0, h - ph))
        out[t][y:y + ph, x:x + pw] = patch
    return out


def inject_frozen(frames: list[np.ndarray], span: range) -> list[np.ndarray]:
    """Every span frame replaced by the frame before the span (a freeze)."""
    out = [f.copy() for f in frames]
    for t in span:
        out[t] = frames[span.start - 1].copy()
    return out


def choose_span(n: int, past: int) -> range:
    """About a quarter of the clip, in the middle, after the model's history has filled and
    with normal frames after it."""
    length = max(4, n // 4)
    start = max(past + 3, (n - length) // 2)
    if start + length > n - 3:
        raise SystemExit(f"{n} test frames are too few for a span of {length} after {past} past frames: "
                         f"use --frames {start + length + 3} or more")
    return range(start, start + length)


# --- scoring -------------------------------------------------------------------------------
def model_rows(paths: list[Path], lm: LoadedModel, per_video: bool) -> dict[str, list[dict]]:
    """The app's per-frame rows (``psnr``, ``score``, ``flagged``) of each clip, via analyze."""
    buf = io.StringIO()
    writer = RowWriter(buf, "jsonl", columns_for([lm], with_dicom=False))
    errors: list[str] = []
    analyze([str(p) for p in paths], [lm], writer, calibrate_per_video=per_video,
            on_error=lambda spec, msg: errors.append(f"{spec}: {msg}"))
    if errors:
        raise RuntimeError("analyze failed: " + "; ".join(errors))
    rows: dict[str, list[dict]] = {str(p): [] for p in paths}
    for line in buf.getvalue().splitlines():
        r = json.loads(line)
        rows[r["input"]].append(r)
    for v in rows.values():
        v.sort(key=lambda r: r["frame"])
    return rows


def frame_diff(frames: list[np.ndarray]) -> np.ndarray:
    """Mean |frame t - frame t-1| (0-255) per frame; NaN for frame 0."""
    a = np.stack(frames).astype(np.float32)
    d = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2, 3))
    return np.concatenate([[np.nan], d])


@dataclass
class SpanFlags:
    in_span: int
    span: int
    outside: int
    normal: int

    @property
    def verdict(self) -> str:
        if self.in_span * 2 > self.span:
            return "majority"
        return "any" if self.in_span else "none"

    def text(self) -> str:
        return f"{self.in_span:>2d}/{self.span} {self.verdict:8s} fp {self.outside}/{self.normal}"


@dataclass
class KindResult:
    kind: str
    auc_card: float
    auc_per_video: float
    auc_baseline: float
    auc_model_two_sided: float
    auc_baseline_two_sided: float
    flags: dict[str, SpanFlags] = field(default_factory=dict)
    mean_psnr_span: float = math.nan
    mean_psnr_normal: float = math.nan


def flags(score: np.ndarray, labels: np.ndarray, threshold: float) -> SpanFlags:
    hit = score >= threshold
    y = labels.astype(bool)
    return SpanFlags(int(hit[y].sum()), int(y.sum()), int(hit[~y].sum()), int((~y).sum()))


def evaluate(kind: str, labels: np.ndarray, card_rows: list[dict], pv_rows: list[dict],
             frames: list[np.ndarray], threshold: float) -> KindResult:
    """AUCs and span flags on the frames every score is defined for (the model's first
    ``past_frames`` frames have none)."""
    if len(card_rows) != len(frames) or len(pv_rows) != len(frames):
        raise RuntimeError(f"{kind}: {len(card_rows)}/{len(pv_rows)} rows for {len(frames)} frames")
    # A row has a score once the history is full; its PSNR is then None only where it is
    # infinite (a perfect prediction, e.g. a frozen frame under a copy-last predictor): rows
    # write inf as null. In the two-sided ranking inf lies further from the median than any
    # finite PSNR (as the 100 dB cap of older rows did).
    keep = np.array([r["score"] is not None for r in card_rows]) & (np.arange(len(frames)) > 0)
    y = labels[keep]
    p = np.array([math.inf if r["psnr"] is None else r["psnr"]
                  for r, k in zip(card_rows, keep) if k], np.float64)
    finite = np.isfinite(p)
    p_two_sided = np.zeros_like(p)
    p_two_sided[finite] = two_sided(p[finite])
    p_two_sided[~finite] = p_two_sided.max(initial=0.0) + 1.0
    card = np.array([r["score"] for r, k in zip(card_rows, keep) if k], np.float64)
    pv = np.array([r["score"] for r, k in zip(pv_rows, keep) if k], np.float64)
    diff = frame_diff(frames)[keep]
    base = minmax(diff)
    res = KindResult(
        kind,
        roc_auc(y, card),
        roc_auc(y, pv),
        roc_auc(y, base),
        roc_auc(y, p_two_sided),
        roc_auc(y, two_sided(diff)),
        mean_psnr_span=float(p[y == 1].mean()),  # inf when the span is predicted exactly
        mean_psnr_normal=float(p[y == 0].mean()),
    )
    res.flags = {"card": flags(card, y, threshold), "per-video": flags(pv, y, threshold),
                 "baseline": flags(base, y, 0.5)}
    return res


# --- the model -----------------------------------------------------------------------------
def copy_last_model(out: Path, train_clip: Path) -> tuple[Path, str]:
    """tests/helpers' copy-last-frame predictor, calibrated on the normal part."""
    from tests.helpers import make_copy_last_model

    raw = make_copy_last_model(out.with_name("copy_last_raw.onnx"))
    rows = model_rows([train_clip], load_model(str(raw), display_max_side=None), False)[str(train_clip)]
    p = np.array([r["psnr"] for r in rows if r["psnr"] is not None], np.float64)
    p = p[np.isfinite(p) & (p < 100.0)]
    cal = calibrate(p) if len(p) else {"psnr_min": 20.0, "psnr_max": 40.0}
    lo, hi = cal["psnr_min"], cal["psnr_max"]
    return make_copy_last_model(out, calibration=(lo, hi)), "copy-last-frame predictor (tests/helpers), calibrated on the normal part"


def fit_model(out: Path, train_clip: Path, minutes: float, size: str | None) -> tuple[Path, list[str]]:
    """``python -m loupe_models.fit_anomaly`` on the whole normal-part clip; its summary lines."""
    cmd = [sys.executable, "-m", "loupe_models.fit_anomaly", str(train_clip), "--normal", ":",
           "--out", str(out), "--minutes", f"{minutes:g}"] + (["--size", size] if size else [])
    print(f"fitting: python {' '.join(cmd[1:])}", flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=minutes * 60 * 2 + 300, cwd=REPO)
    if proc.returncode != 0 or not out.is_file():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"fit_anomaly exited {proc.returncode}: {tail}")
    print(f"fitted in {time.perf_counter() - t:.0f} s", flush=True)
    said = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines()
            if ln.startswith(("fitting on", "trained", "calibration", "held-out"))]
    return out, said


def choose_model(args, work: Path, train_clip: Path) -> tuple[Path, str, list[str]]:
    """The model, how it was chosen, and what the fit said (if one was fitted)."""
    if args.model:
        return Path(args.model), "given (--model)", []
    demo = REPO / "resources" / "demo_anomaly.onnx"
    if demo.is_file():
        return demo, "bundled resources/demo_anomaly.onnx", []
    note = "loupe_models.fitters.anomaly is not installed"
    if importlib.util.find_spec("loupe_models.fitters.anomaly") is not None:
        try:
            path, said = fit_model(work / "fitted_anomaly.onnx", train_clip, args.fit_minutes, args.fit_size)
            return path, f"fitted here by loupe_models.fitters.anomaly ({args.fit_minutes:g} min budget) on the normal part", said
        except Exception as e:  # a failed fit must not lose the benchmark
            note = f"fitting failed ({type(e).__name__}: {e})"
    path, how = copy_last_model(work / "copy_last.onnx", train_clip)
    return path, f"FALLBACK {how}; {note}", []


# --- the run -------------------------------------------------------------------------------
def fmt(v: float) -> str:
    return "  nan" if math.isnan(v) else f"{v:5.3f}"


def run(args, work: Path) -> list[KindResult]:
    t0 = time.perf_counter()
    base = BASES[args.clip]

    shot = read_frames(clip_path(base.clip), base.shot_start, base.shot_end, base.size)
    n_train = base.train_end - base.shot_start
    train, test = shot[:n_train], shot[n_train:]
    if args.frames:
        test = test[:args.frames]
    train_clip = write_clip(work / "normal_train.mkv", train)

    model_path, how, fit_said = choose_model(args, work, train_clip)
    lm = load_model(str(model_path), display_max_side=None)
    task = lm.task
    if task.name != "anomaly":
        raise SystemExit(f"{model_path.name} is a {task.name} model, not an anomaly model")
    span = choose_span(len(test), task.past)

    h, w = test[0].shape[:2]
    donor = read_frames(clip_path(DONOR), 0, DONOR_START + len(span))
    flow, moving = dominant_flow(test)
    if np.linalg.norm(flow) < 0.25:
        direction, flow_note = np.array([1.0, 0.0]), "no dominant motion: the patch moves left to right"
    else:
        direction = -flow / np.linalg.norm(flow)
        flow_note = f"the patch moves against it, along {direction[0]:+.2f},{direction[1]:+.2f}"
    speed = max(3.0, 2.0 * float(np.linalg.norm(flow)))
    patch = textured_patch(cv2.resize(donor[DONOR_PATCH], (w * 2, h * 2), interpolation=cv2.INTER_AREA),
                           max(8, min(h, w) // 4))
    clips = {
        "pasted": inject_pasted(test, span, donor[DONOR_START:]),
        "against-flow": inject_against_flow(test, span, patch, direction, speed),
        "frozen": inject_frozen(test, span),
    }
    labels = np.zeros(len(test), np.int64)
    labels[span.start:span.stop] = 1
    paths = {k: write_clip(work / f"test_{k}.mkv", v) for k, v in clips.items()}
    (work / "labels.json").write_text(json.dumps({"span": [span.start, span.stop], "labels": labels.tolist()}))

    t_score = time.perf_counter()
    card_rows = model_rows(list(paths.values()), lm, per_video=False)
    pv_rows = model_rows(list(paths.values()), lm, per_video=True)
    t_score = time.perf_counter() - t_score
    results = []
    for k, p in paths.items():
        decoded = read_frames(p)  # what the model saw, exactly (lossless)
        results.append(evaluate(k, labels, card_rows[str(p)], pv_rows[str(p)], decoded, task.threshold))

    n_scored = len(test) - max(task.past, 1)
    ms = 1e3 * t_score / max(2 * len(paths) * len(test), 1)
    import onnxruntime as ort

    print("Loupe anomaly benchmark: frame-level ROC AUC on anomalies injected into real footage")
    print(f"cores: {os.cpu_count()}   ONNX Runtime {ort.__version__} provider: {lm.engine.provider} "
          f"({', '.join(lm.engine.providers)})")
    print(f"model: {model_path.name}: {how}")
    for line in fit_said:
        print(f"       fit: {line}")
    print(f"       past_frames {task.past}, card calibration PSNR {task.psnr_min:.2f}..{task.psnr_max:.2f} dB, "
          f"threshold {task.threshold:g}; {ms:.1f} ms/frame through analyze")
    print(f"footage: {base.clip} frames {base.train_end}..{base.train_end + len(test) - 1} ({len(test)} frames, "
          f"{w}x{h}); normal part (never in a test clip) frames {base.shot_start}..{base.train_end - 1}")
    print(f"span: test frames {span.start}..{span.stop - 1} ({len(span)} frames) in each clip; scored frames "
          f"{max(task.past, 1)}..{len(test) - 1} ({len(span)} anomalous, {n_scored - len(span)} normal)")
    print(f"dominant motion (median flow of moving pixels, {100 * moving:.0f}% of pixels): "
          f"{flow[0]:+.2f},{flow[1]:+.2f} px/frame; {flow_note}, {speed:.1f} px/frame")
    print(f"clips: {work}" if args.keep else "clips: in a temporary folder, removed after the run (--keep DIR keeps them)")
    print()
    print("ROC AUC (0.5 = chance, < 0.5 = the score goes the wrong way: the span scores LOWER than normal)")
    print(f"{'anomaly':13s} {'model:card':>10s} {'model:video':>11s} {'baseline':>8s} | "
          f"{'2-sided:model':>13s} {'2-sided:base':>12s} | {'PSNR dB: span':>13s} {'normal':>6s}")
    for r in results:
        print(f"{r.kind:13s} {fmt(r.auc_card):>10s} {fmt(r.auc_per_video):>11s} {fmt(r.auc_baseline):>8s} | "
              f"{fmt(r.auc_model_two_sided):>13s} {fmt(r.auc_baseline_two_sided):>12s} | "
              f"{r.mean_psnr_span:13.2f} {r.mean_psnr_normal:6.2f}")
    print("  model:card = the card's calibration (live score); model:video = analyze --calibrate-per-video;")
    print("  baseline = mean |frame t - frame t-1|, min-max per video (no model);")
    print("  two-sided = |PSNR - median| (model) or |diff - median| (baseline): a freeze is anomalous by being")
    print("  too regular (predicting 'no change' is perfect on it), which one-sided scores rank as the MOST normal.")
    print()
    print(f"span flagged (frames at or above the threshold: in the span, verdict, false positives outside it; "
          f"model threshold {task.threshold:g}, baseline 0.5)")
    print(f"{'anomaly':13s} {'model:card':28s} {'model:video':28s} {'baseline':28s}")
    for r in results:
        print(f"{r.kind:13s} " + " ".join(f"{r.flags[c].text():28s}" for c in ("card", "per-video", "baseline")))
    print()
    print(f"run time: {time.perf_counter() - t0:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", choices=sorted(BASES), default="carphone", help="the normal shot (default carphone)")
    ap.add_argument("--frames", type=int, default=None, help="test clip length (default: all of the test part)")
    ap.add_argument("--model", default=None, help="an anomaly ONNX model (default: see the module docstring)")
    ap.add_argument("--fit-minutes", type=float, default=3.0, help="budget when fitting a model (default 3)")
    ap.add_argument("--fit-size", default=None, help="fit_anomaly --size (default: its own, 128x128)")
    ap.add_argument("--keep", default=None, help="write the clips (and any fitted model) here, not to a temp dir")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        run(args, Path(args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="loupe_anomaly_auc_") as d:
            run(args, Path(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
