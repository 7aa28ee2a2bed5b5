"""Add a tiny Ultralytics YOLO11 segment export and Ultralytics' own predictions to tests/data/ultralytics.

A reference tool, NOT part of Loupe (it needs ``ultralytics``, AGPL-3.0: a venv of its own, as
``make_ultralytics_refs.py``, whose model building and detection calibration it reuses). It reads
the two PNG frames that script wrote, builds ``yolo11-seg.yaml`` at width 0.0625 (random weights,
seeded), calibrates the BatchNorm statistics and the class convs as the detectors were, then
narrows the box branch (``slim_box_branch``: the file stays under 1 MB), spreads the mask coefficients (each coefficient conv output zero-mean, std ``COEF_STD`` over the
frames' anchors) so that masks cover parts of their boxes, exports ONNX and predicts:

    YOLO_OFFLINE=1 /tmp/ultra/bin/python tools/make_ultralytics_seg_refs.py --out tests/data/ultralytics

It writes the export, ``seg_manifest.json`` (versions, the model's seed, calibration, size,
sha256, metadata and shapes, as ``manifest.json`` has them for the other exports, which it leaves
alone) and, for each frame, ``yolo11t_seg_320__<frame>.json``: boxes, scores, classes (as the detect
references), and each instance's mask in SOURCE-frame pixels as Ultralytics maps it back: its
``masks.data`` (input resolution, ``process_mask(..., upsample=True)``: prototype logits upsampled
bilinearly to the input, above 0, cropped to the box) cropped to the letterbox content and resized
bilinearly to the frame by ``ops.scale_masks``, above 0.5; stored as ``mask_area`` (pixels) and a
row-major run-length code (``rle``: run lengths alternating 0s and 1s, starting with 0s).
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
import onnxruntime as ort
import torch
import ultralytics
from make_ultralytics_refs import (
    CFG,
    CONF,
    IOU,
    MAX_DET,
    Thin,
    build,
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
from ultralytics.nn.modules import Conv
from ultralytics.utils import ops

NAME = "yolo11t_seg_320.onnx"
HW = (320, 320)
NAMES = ["person", "bicycle", "car", "motorcycle", "bus"]
COEF_STD = 1.5
BOX_WIDTH = 16
MIN_MASK_AREA = 30  # source pixels: smaller masks are all edge (their IoU says little)


def rle(mask: np.ndarray) -> list[int]:
    flat = mask.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0, *runs]


def slim_box_branch(model: YOLO, width: int = BOX_WIDTH) -> None:
    """The box branch of each level (``cv2``: two 3 x 3 convs of max(16, C/4, 4 x reg_max) = 64
    channels, half the export's weights) rebuilt ``width`` channels wide, so the ONNX stays under
    1 MB; its layout (4 x reg_max DFL bins per anchor) is unchanged."""
    head = model.model.model[-1]
    with torch.no_grad():
        for k, seq in enumerate(head.cv2):
            ch = seq[0].conv.in_channels
            head.cv2[k] = torch.nn.Sequential(Conv(ch, width, 3), Conv(width, width, 3),
                                              torch.nn.Conv2d(width, 4 * head.reg_max, 1))
    model.model.eval()


def calibrate_coefficients(model: YOLO, imgs: list[np.ndarray], seed: int) -> dict:
    """Each mask-coefficient channel (the last conv of ``cv4`` per level) zero-mean with std
    COEF_STD over the frames' anchors, plus a seeded offset (std 0.5): mask logits then vary in
    sign inside boxes."""
    head = model.model.model[-1]
    convs = [s[-1] for s in head.cv4]
    cap: dict[int, list] = {}
    hooks = [c.register_forward_hook(lambda m, i, o, k=k: cap.setdefault(k, []).append(o.detach().numpy()[0]))
             for k, c in enumerate(convs)]
    with torch.no_grad():
        for f in imgs:
            model.model(letterboxed(f, HW))
    for h in hooks:
        h.remove()
    rng = np.random.default_rng(seed)
    off = rng.normal(0.0, 0.5, convs[0].out_channels)
    with torch.no_grad():
        for k, conv in enumerate(convs):
            b = conv.bias.numpy().astype(np.float64)
            z = np.concatenate([o.reshape(conv.out_channels, -1) - b[:, None] for o in cap[k]], 1)
            g = COEF_STD / np.maximum(z.std(1), 1e-6)
            conv.weight.mul_(torch.from_numpy(g.astype(np.float32))[:, None, None, None])
            conv.bias.copy_(torch.from_numpy((off - g * z.mean(1)).astype(np.float32)))
    return {"coefficient_std": COEF_STD, "coefficient_offset_std": 0.5}


def predict(path: Path, frame: Path) -> dict:
    r = YOLO(str(path), task="segment").predict(source=str(frame), conf=CONF, iou=IOU, max_det=MAX_DET,
                                                device="cpu", verbose=False)[0]
    img = cv2.imread(str(frame))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    raw = sess.run(None, {sess.get_inputs()[0].name: letterboxed(img, HW).numpy()})[0]
    m = detect_margins(raw[:, : 4 + len(NAMES)])
    check(m, f"{path.name} on {frame.name}")
    h, w = r.orig_shape
    masks = []
    if r.masks is not None:
        data = r.masks.data.float()  # (N, 320, 320), the letterboxed input's pixels
        src = ops.scale_masks(data[None], (h, w))[0] > 0.5  # as Ultralytics maps masks to the frame
        masks = [mk.numpy() for mk in src]
    areas = [int(mk.sum()) for mk in masks]
    m["kept_boxes"] = len(r.boxes)
    m["smallest_mask_area"] = min(areas) if areas else None
    if not areas or sum(a >= MIN_MASK_AREA for a in areas) < 5:
        raise Thin(f"{frame.name}: too few masks of {MIN_MASK_AREA}+ pixels")
    return {
        "boxes_xyxy": r.boxes.xyxy.numpy().astype(float).tolist(),
        "scores": r.boxes.conf.numpy().astype(float).tolist(),
        "classes": r.boxes.cls.numpy().astype(int).tolist(),
        "labels": [r.names[int(c)] for c in r.boxes.cls.numpy()],
        "orig_hw": [h, w],
        "mask_area": areas,
        "rle": [rle(mk) for mk in masks],
        "margins": m,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True,
                    help="tests/data/ultralytics (its frames and manifest.json are read; seg_manifest.json is written)")
    args = ap.parse_args()
    out = args.out
    manifest = json.loads((out / "manifest.json").read_text())
    frames = manifest["frames"]
    imgs = [cv2.imread(str(out / f)) for f in frames]
    torch.set_num_threads(1)
    def attempt(a: int, tmp: Path) -> tuple:
        seed = 17 + 100 * a
        model = build(CFG / "models/11/yolo11-seg.yaml", 0.0625, len(NAMES), NAMES, "segment", seed, tmp,
                      NAME.split(".")[0])
        slim_box_branch(model)
        calibrate_batchnorm(model, imgs, HW)
        info = {"one2many": calibrate_detect(model, imgs, HW, seed, 20, "one2many", (0.0, 1.5, -0.35))}
        info["masks"] = calibrate_coefficients(model, imgs, seed)
        path = export(model, out, NAME, list(HW))
        return seed, info, path, {f: predict(path, out / f) for f in frames}

    with tempfile.TemporaryDirectory() as td:
        seed, info, path, refs = first_with_margins(NAME, 40, lambda a: attempt(a, Path(td)))
    seg = {k: manifest[k] for k in ("ultralytics", "torch", "onnxruntime", "onnx", "opencv", "conf", "iou", "max_det")
           if k in manifest}
    seg.update(ultralytics=ultralytics.__version__, torch=torch.__version__, onnxruntime=ort.__version__,
               frames=frames, models={})
    entry = {"task": "segment", "yaml": "models/11/yolo11-seg.yaml", "seed": seed, "width": 0.0625,
             "imgsz": list(HW), "export": {"opset": 17, "simplify": False}, "calibration": info,
             "box_branch_width": BOX_WIDTH, "predictor": "YOLO(onnx, task='segment').predict (retina_masks off)"}
    record(out, [(NAME, path, refs, entry)], seg)
    (out / "seg_manifest.json").write_text(json.dumps(seg, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
