"""Make the pose part of tests/data/ultralytics: tiny Ultralytics pose exports and its own predictions.

A reference tool, NOT part of Loupe (Ultralytics is AGPL-3.0 and never a dependency): it runs in
the reference venv beside ``tools/make_ultralytics_refs.py``, whose helpers it reuses (model
building from Ultralytics' YAMLs at a tiny width, BatchNorm and class-head calibration, export,
the margin checks), and writes, next to the detect/classify references:

- ``yolo11t_pose_320.onnx`` (YOLO11-pose, ``cfg/models/11/yolo11-pose.yaml``) and
  ``yolov8t_pose_256x320.onnx`` (YOLOv8-pose, ``cfg/models/v8/yolov8-pose.yaml``, a non-square
  input, at most 384 x 0.0625 = 24 channels), both with ``reg_max: 4`` (DFL bins; decoded inside
  the graph, so nothing Loupe reads changes) to stay under 1 MB, one class ("person"), ``kpt_shape`` [17, 3]: output ``1 x (4 + 1 + 51) x A``;
- ``<model>__<frame>.json``: Ultralytics' ``YOLO(onnx, task="pose").predict`` on the two PNG
  frames (boxes as the detect references, plus ``keypoints``: ``Results.keypoints.data``, N x 17
  x 3 (x, y, visibility) in frame pixels);
- ``pose_manifest.json``: versions, seeds, calibration, sizes, sha256, metadata, shapes (a
  manifest of its own, so the detect/classify manifest and its tests stay as they are).

    YOLO_OFFLINE=1 OMP_NUM_THREADS=1 /tmp/ultra/bin/python tools/make_ultralytics_pose_refs.py \\
        --out tests/data/ultralytics

The frames must already be in ``--out`` (``make_ultralytics_refs.py`` writes them). The keypoint
branch keeps its random (seeded) weights: keypoints land within a few strides of their anchor,
visibility is a sigmoid of a random logit. The box and class branches are calibrated as the
detect references are, and the same margins are required (no score near 0.25, no IoU near 0.7
with a kept box...), so which boxes Ultralytics keeps is not decided by float noise; each kept
box's keypoints then follow from its anchor.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
import ultralytics
import yaml
from make_ultralytics_refs import (
    CFG,
    CONF,
    IOU,
    MAX_DET,
    Thin,
    calibrate_batchnorm,
    calibrate_detect,
    check,
    detect_margins,
    export,
    first_with_margins,
    letterboxed,
    record,
)
from ultralytics import YOLO
from ultralytics.data.augment import LetterBox

NC = 1
#: DFL bins per box side (Ultralytics' default is 16): 4 keeps the box branch, and the file, small
#: (under 1 MB; the keypoint branch alone is ~115 k parameters for 17 keypoints)
REG_MAX = 4
SPECS = (  # name, yaml, width, max channels (before x width), imgsz (h, w), seed, target candidates
    ("yolo11t_pose_320.onnx", "models/11/yolo11-pose.yaml", 0.0625, 512, (320, 320), 17, 30),
    ("yolov8t_pose_256x320.onnx", "models/v8/yolov8-pose.yaml", 0.0625, 384, (256, 320), 18, 20),
)


def score_shift(path: Path, img_bgr: np.ndarray, hw: tuple[int, int]) -> tuple[float, float]:
    """How far the class scores, and the keypoints (pixels), move when the input's last bit
    changes (x * (1 / 255) for x / 255)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lb = LetterBox(new_shape=hw, auto=False, stride=32)(image=img_bgr)[:, :, ::-1].transpose(2, 0, 1)[None]
    name = sess.get_inputs()[0].name
    oa = sess.run(None, {name: np.ascontiguousarray(lb, np.float32) / np.float32(255)})[0]
    ob = sess.run(None, {name: np.ascontiguousarray(lb, np.float32) * np.float32(1 / 255)})[0]
    return float(np.abs(oa[:, 4:4 + NC] - ob[:, 4:4 + NC]).max()), float(np.abs(oa[:, 4 + NC:] - ob[:, 4 + NC:]).max())


def predict_pose(path: Path, frame: Path, hw: tuple[int, int]) -> dict:
    r = YOLO(str(path), task="pose").predict(source=str(frame), conf=CONF, iou=IOU, max_det=MAX_DET,
                                             device="cpu", verbose=False)[0]
    img = cv2.imread(str(frame))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    raw = sess.run(None, {sess.get_inputs()[0].name: letterboxed(img, hw).numpy()})[0]
    m = detect_margins(raw[:, :4 + NC])
    m["rounding_shift"], m["keypoint_rounding_shift"] = score_shift(path, img, hw)
    check(m, f"{path.name} on {frame.name}")
    if len(r.boxes) < 5:
        raise Thin(f"{path.name} on {frame.name}: only {len(r.boxes)} boxes")
    xyxy = r.boxes.xyxy.numpy().astype(np.float64)
    wh = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
    if ((wh > 0) & (wh < 0.1)).any():  # clipped to a sliver at the frame's edge: kept or dropped by rounding
        raise Thin(f"{path.name} on {frame.name}: a box {wh[(wh > 0) & (wh < 0.1)].min():.2g} px wide after clipping")
    return {
        "boxes_xyxy": r.boxes.xyxy.numpy().astype(float).tolist(),
        "scores": r.boxes.conf.numpy().astype(float).tolist(),
        "classes": r.boxes.cls.numpy().astype(int).tolist(),
        "labels": [r.names[int(c)] for c in r.boxes.cls.numpy()],
        "keypoints": r.keypoints.data.numpy().astype(float).tolist(),
        "orig_hw": list(r.orig_shape),
        "margins": m,
    }


def make(spec: tuple, attempt: int, imgs: list, frames: list[str], out: Path, tmp: Path) -> tuple:
    name, ypath, width, max_ch, hw, seed0, target = spec
    seed = seed0 + 100 * attempt
    cfg = yaml.safe_load((CFG / ypath).read_text())
    cfg["reg_max"] = REG_MAX
    cfg["scales"] = {"t": [0.34, width, max_ch]}
    cfg["scale"] = "t"
    cfg["nc"] = NC
    p = tmp / f"{name.split('.')[0]}.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    torch.manual_seed(seed)  # as make_ultralytics_refs.build, with the max channels and reg_max set
    model = YOLO(str(p), task="pose")
    model.model.names = {0: "person"}
    model.model.eval()
    assert model.model.model[-1].reg_max == REG_MAX
    calibrate_batchnorm(model, imgs, hw)
    info = calibrate_detect(model, imgs, hw, seed, target, "one2many", (0.0, 1.5, 0.0))
    path = export(model, out, name, list(hw))
    refs = {f: predict_pose(path, out / f, hw) for f in frames}
    entry = {"task": "pose", "yaml": f"{ypath} with reg_max {REG_MAX}", "seed": seed, "width": width,
             "max_channels": max_ch, "imgsz": list(hw),
             "export": {"opset": 17, "simplify": False}, "calibration": info}
    return path, refs, entry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="tests/data/ultralytics (holding the PNG frames)")
    args = ap.parse_args()
    out = args.out
    torch.set_num_threads(1)
    frames = json.loads((out / "manifest.json").read_text())["frames"]
    imgs = [cv2.imread(str(out / f)) for f in frames]
    manifest: dict = {"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                      "onnxruntime": ort.__version__, "onnx": onnx.__version__, "opencv": cv2.__version__,
                      "conf": CONF, "iou": IOU, "max_det": MAX_DET, "frames": frames, "models": {}}
    with tempfile.TemporaryDirectory() as td:
        for spec in SPECS:
            path, refs, entry = first_with_margins(spec[0], 30, lambda a, sp=spec: make(sp, a, imgs, list(frames), out,
                                                                                         Path(td)))
            record(out, [(spec[0], path, refs, entry)], manifest)
    (out / "pose_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
