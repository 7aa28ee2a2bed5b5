"""Benchmark: rate-distortion of HNeRV against H.264 and H.265 at the same number of bits.

For the demo clip (``carphone_pristine.mp4``, 120 frames, the demo model's centre crop), at
three HNeRV parameter budgets (default 0.1M, 0.2M, 0.3M):

1. HNeRV is fitted (:func:`loupe_models.fitters.hnerv.fit_hnerv_clip`, ``--epochs`` epochs, the
   wall time is printed); for the 0.3M point the shipped demo (``resources/demo_hnerv.onnx``
   + ``.hnerv``) is used unless ``--refit`` (its fitting time comes from its notes file).
   The frames are decoded from the entropy-coded ``.hnerv`` file (what the bits hold).
2. H.264 (libx264) and H.265 (libx265) encode the same cropped frames through PyAV at a size
   within 5 % of the ``.hnerv`` file (:func:`loupe.run.codecs.encode_matched`: CRF search, then
   bitrate) and are decoded back.
3. Every stream is compared with the cropped source frames as FFmpeg would
   (:mod:`loupe.base.quality`): YUV 4:2:0 PSNR pooled (PSNR of the mean MSE, FFmpeg "average")
   and mean of per-frame PSNR, SSIM (FFmpeg "All", mean over frames), bits per pixel.

Prints the core count and load average, the table, and a plain-words verdict.

    python bench/compression_rd.py [--sizes 0.1M,0.2M,0.3M] [--epochs 30] [--refit]
                                   [--minutes 12] [--json PATH] [--frames N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLIP = "carphone_pristine.mp4"


def _load() -> str:
    la = os.getloadavg()
    return f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"


def _metrics(ref_planes: list, dist_planes: list) -> dict[str, float]:
    from loupe.base import quality as q

    frames = [q.frame_metrics(a, b) for a, b in zip(ref_planes, dist_planes, strict=True)]
    return q.pool(frames)


def _hnerv_frames(codec_path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Decoded RGB uint8 frames of a .hnerv file and its header meta."""
    import torch

    from loupe_models.fitters import hnerv_codec as hc
    from loupe_models.fitters.hnerv import decode_all
    from loupe_models.nets.hnerv import HNeRVConfig, HNeRVDecoder

    rep = hc.read_representation(codec_path.read_bytes())
    dec = HNeRVDecoder(HNeRVConfig.from_dict(rep.config))
    dec.load_state_dict({k: torch.from_numpy(v) for k, v in rep.state_dict().items()})
    emb = torch.from_numpy(rep.embeddings.dequantize())
    return decode_all(dec, emb), rep.meta


def _demo_fit_seconds(md: Path) -> float | None:
    if not md.is_file():
        return None
    m = re.search(r"Reproduce \((\d+) s in all", md.read_text(encoding="utf-8"))
    return float(m.group(1)) if m else None


def verdict(rows: list[dict[str, Any]]) -> str:
    """One plain sentence per size: where HNeRV wins and loses against the better codec."""
    out = []
    for size in dict.fromkeys(r["size"] for r in rows):
        group = {r["codec"]: r for r in rows if r["size"] == size}
        h = group["HNeRV"]
        others = [group[c] for c in ("H.264", "H.265") if c in group]
        best_p = max(others, key=lambda r: r["psnr_pooled"])
        best_s = max(others, key=lambda r: r["ssim"])
        dp = h["psnr_pooled"] - best_p["psnr_pooled"]
        ds = h["ssim"] - best_s["ssim"]
        word_p = "wins" if dp > 0 else "loses"
        word_s = "wins" if ds > 0 else "loses"
        out.append(f"{size} ({h['bpp']:.3f} bpp): HNeRV {word_p} on PSNR by {abs(dp):.2f} dB "
                   f"against {best_p['codec']} and {word_s} on SSIM by {abs(ds):.4f} against "
                   f"{best_s['codec']}")
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    wins = sum(1 for s in sizes
               if next(r for r in rows if r["size"] == s and r["codec"] == "HNeRV")["psnr_pooled"]
               > max(r["psnr_pooled"] for r in rows if r["size"] == s and r["codec"] != "HNeRV"))
    fit = [r["seconds"] for r in rows if r["codec"] == "HNeRV" and r.get("seconds")]
    enc = [r["seconds"] for r in rows if r["codec"] != "HNeRV" and r.get("seconds") is not None]
    overall = f"Overall HNeRV wins on PSNR at {wins} of {len(sizes)} sizes"
    if fit and enc:
        overall += (f"; fitting it took {min(fit):.0f}-{max(fit):.0f} s per size on this CPU, "
                    f"a codec's whole size search {min(enc):.0f}-{max(enc):.0f} s")
    return "; ".join(out) + ". " + overall + "."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="0.1M,0.2M,0.3M")
    ap.add_argument("--epochs", type=int, default=30, help="epochs per HNeRV fit (default 30)")
    ap.add_argument("--minutes", type=float, default=12.0, help="time limit per fit (default 12)")
    ap.add_argument("--refit", action="store_true", help="fit every size, also the demo's")
    ap.add_argument("--frames", type=int, help="only the first N frames (quick runs)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--demo", help="demo ONNX (default resources/demo_hnerv.onnx)")
    ap.add_argument("--json", help="write the rows as JSON here")
    args = ap.parse_args(argv)

    from loupe.base import quality as q
    from loupe.base.media import clip_path
    from loupe.run import codecs
    from loupe_models.fitters.hnerv import _read_clip, fit_hnerv_clip, parse_params

    root = Path(__file__).resolve().parents[1]
    demo = Path(args.demo) if args.demo else root / "resources" / "demo_hnerv.onnx"
    print(f"compression RD benchmark: {CLIP}, {os.cpu_count()} cores, load average {_load()}",
          flush=True)
    clip = clip_path(CLIP)
    frames, fps = _read_clip(clip, max_frames=args.frames)
    fps = float(fps or 25.0)
    sizes = [parse_params(s) for s in args.sizes.split(",")]
    demo_hnerv = demo.with_suffix(".hnerv")
    use_demo = demo_hnerv.is_file() and not args.refit and args.frames is None
    crop = None
    if use_demo:
        crop = _hnerv_frames(demo_hnerv)[1]["crop"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="loupe-rd-") as tmp:
        for params in sizes:
            label = f"{params / 1e6:g}M"
            if use_demo and abs(params - 0.3e6) < 1:
                codec_path, fit_s = demo_hnerv, _demo_fit_seconds(demo.with_suffix(".md"))
                how = "shipped demo"
            else:
                t0 = time.perf_counter()
                res = fit_hnerv_clip(str(clip), Path(tmp) / f"h{label}.onnx", params=params,
                                     epochs=args.epochs, minutes=args.minutes,
                                     crop=None if crop is None else crop, threads=args.threads,
                                     max_frames=args.frames)
                fit_s = time.perf_counter() - t0
                codec_path = res.codec_path
                how = f"fitted here, {res.epochs} epochs, {res.threads} thread(s)"
            dec_rgb, meta = _hnerv_frames(codec_path)
            t, left, h, w = meta["crop"]
            crop = crop or [t, left, h, w]
            target = np.ascontiguousarray(frames[: len(dec_rgb), t:t + h, left:left + w])
            if len(target) != len(dec_rgb):
                raise SystemExit(f"{codec_path.name} holds {len(dec_rgb)} frames, the clip "
                                 f"{len(target)}")
            ref_planes = [q.rgb_to_yuv420(f) for f in target]
            nbytes = codec_path.stat().st_size
            n_px = len(target) * h * w
            m = _metrics(ref_planes, [q.rgb_to_yuv420(f) for f in dec_rgb])
            rows.append({"size": label, "codec": "HNeRV", "bytes": nbytes,
                         "bpp": 8 * nbytes / n_px, "psnr_pooled": m["psnr_pooled"],
                         "psnr_mean": m["psnr_mean"], "ssim": m["ssim_mean"],
                         "seconds": fit_s, "note": how, "load": _load()})
            print(f"  HNeRV {label}: {nbytes} bytes ({how}, load {_load()})", flush=True)
            for codec in ("h264", "h265"):
                t0 = time.perf_counter()
                enc = codecs.encode_matched(target, fps, codec, nbytes)
                secs = time.perf_counter() - t0
                m = _metrics(ref_planes, enc.decoded)
                rows.append({"size": label, "codec": enc.label, "bytes": enc.bytes,
                             "bpp": 8 * enc.bytes / n_px, "psnr_pooled": m["psnr_pooled"],
                             "psnr_mean": m["psnr_mean"], "ssim": m["ssim_mean"],
                             "seconds": secs, "note": (f"crf {enc.crf:g}" if enc.crf is not None
                                                       else f"{enc.bitrate} b/s")
                             + ("" if enc.matched else ", NOT within 5 %"),
                             "load": _load()})
    print()
    print(f"{'size':>5} {'codec':>6} {'bytes':>7} {'bpp':>7} {'PSNR pooled':>11} "
          f"{'PSNR mean':>9} {'SSIM':>7} {'time s':>7}  note")
    for r in rows:
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(f"{r['size']:>5} {r['codec']:>6} {r['bytes']:>7} {r['bpp']:>7.4f} "
              f"{r['psnr_pooled']:>11.2f} {r['psnr_mean']:>9.2f} {r['ssim']:>7.4f} {secs:>7}  "
              f"{r['note']}")
    print()
    print("PSNR/SSIM: YUV 4:2:0 as FFmpeg computes them against the cropped source frames; "
          "HNeRV time = fitting on this CPU, codec time = CRF search + encodes + decode.")
    print("Verdict: " + verdict(rows))
    print(f"{os.cpu_count()} cores, load average at the end {_load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
              for k, v in r.items()} for r in rows], indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
