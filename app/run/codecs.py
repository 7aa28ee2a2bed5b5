"""Reference codecs: H.264 (libx264) and H.265 (libx265) through PyAV at a matched size (Qt-free).

``encode_matched`` encodes frames as yuv420p (converted from RGB exactly as ``loupe.base.quality``
converts them for the metrics) and searches the rate until the encoded stream is within
``tolerance`` (5 %) of a target number of bytes: first CRF (fractional CRF, bracketed and
interpolated in log size, which is close to linear in CRF), then, where no CRF in [0, 51]
gets there (e.g. a target below what CRF 51 gives), average bitrate. The size counted is the
whole elementary stream (Annex B: parameter sets and every coded frame), held in memory; SEI
messages are dropped (x264 writes its version and settings string there, ~0.6 kB; nothing needs
them to decode) and no container overhead is counted. No file is written.

The decoded frames come back lazily: ``EncodedClip.decoded`` decodes the stream once and keeps
the (Y, U, V) planes (1.5 bytes per pixel); ``frame_rgb(i)`` converts one frame for display and
``release()`` drops the planes (they are decoded again when next asked for).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from loupe.base.errors import LoupeError
from loupe.base.progress import Progress, as_progress
from loupe.base.quality import Planes, _frame_planes, rgb_to_yuv420, yuv420_to_rgb

CODECS = {
    # name: (encoder, decoder, label, extra encoder options)
    "h264": ("libx264", "h264", "H.264", {}),
    "h265": ("libx265", "hevc", "H.265", {"x265-params": "log-level=error:info=0"}),
}
CRF_RANGE = (0.0, 51.0)


class CodecError(LoupeError, RuntimeError):
    """An encoder is missing or failed; the message is one line for the user."""


@dataclass
class EncodedClip:
    codec: str  # "h264" | "h265"
    bytes: int  # size of the elementary stream
    crf: float | None  # the CRF used (None when the bitrate mode was needed)
    bitrate: int | None  # bits/s in bitrate mode
    data: bytes  # the Annex B elementary stream
    packet_sizes: list[int]
    width: int
    height: int
    fps: float
    frames: int
    target_bytes: int
    matched: bool  # within tolerance of target_bytes
    tolerance: float
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {"crf"|"bitrate", "bytes"} per encode
    seconds: float = 0.0
    preset: str = "medium"
    _decoded: list[Planes] | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return CODECS[self.codec][2]

    @property
    def bits(self) -> int:
        return 8 * self.bytes

    @property
    def bpp(self) -> float:
        return self.bits / float(self.frames * self.width * self.height)

    @property
    def path(self) -> None:  # contract: "path or data" -- the stream lives in memory
        return None

    @property
    def decoded(self) -> list[Planes]:
        """The decoded (Y, U, V) planes of every frame (decoded once, kept until ``release``)."""
        if self._decoded is None:
            self._decoded = decode_stream(self.codec, self.data, self.packet_sizes, self.width, self.height)
            if len(self._decoded) != self.frames:
                raise CodecError(f"{self.label} stream decoded to {len(self._decoded)} frames, {self.frames} were encoded")
        return self._decoded

    def frame_yuv(self, i: int) -> Planes:
        return self.decoded[i]

    def frame_rgb(self, i: int) -> np.ndarray:
        """Frame i as H x W x 3 uint8 RGB (converted from the decoded planes)."""
        return yuv420_to_rgb(self.decoded[i])

    @property
    def decoded_rgb(self) -> np.ndarray:
        """N x H x W x 3 uint8 RGB of every frame (converted on each access; 3 bytes per pixel
        per frame, so prefer ``frame_rgb(i)`` for long clips)."""
        return np.stack([yuv420_to_rgb(p) for p in self.decoded])

    def release(self) -> None:
        self._decoded = None

    def summary(self) -> dict[str, Any]:
        return {"codec": self.codec, "label": self.label, "bytes": self.bytes, "bits": self.bits, "bpp": self.bpp,
                "crf": self.crf, "bitrate": self.bitrate, "target_bytes": self.target_bytes, "matched": self.matched,
                "preset": self.preset, "encodes": len(self.attempts), "seconds": round(self.seconds, 3)}


def _even(n: int) -> int:
    return n + (n & 1)


def _video_frames(frames_yuv: Sequence[Planes], width: int, height: int) -> list[Any]:
    """PyAV yuv420p frames (padded by edge replication to even sizes, which 4:2:0 encoders need)."""
    import av

    ew, eh = _even(width), _even(height)
    out = []
    for y, u, v in frames_yuv:
        if (ew, eh) != (width, height):
            y = np.pad(y, ((0, eh - height), (0, ew - width)), mode="edge")
        vf = av.VideoFrame(ew, eh, "yuv420p")
        for dst, src in zip(vf.planes[:3], (y, u, v)):
            buf = np.frombuffer(dst, np.uint8).reshape(-1, dst.line_size)
            buf[: dst.height, : dst.width] = src[: dst.height, : dst.width]
        out.append(vf)
    return out


def _strip_sei(pkt: bytes, codec: str) -> bytes:
    """``pkt`` without its SEI NAL units (H.264 type 6; HEVC prefix/suffix SEI 39/40)."""
    starts = []
    i = pkt.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i)
        i = pkt.find(b"\x00\x00\x01", i + 3)
    if not starts:
        return pkt
    keep = [pkt[: max(0, starts[0] - (1 if starts[0] > 0 and pkt[starts[0] - 1] == 0 else 0))]]
    for k, s in enumerate(starts):
        begin = s - 1 if s > 0 and pkt[s - 1] == 0 else s
        end = starts[k + 1] if k + 1 < len(starts) else len(pkt)
        if k + 1 < len(starts) and pkt[end - 1] == 0:
            end -= 1  # the leading zero of a 4-byte start code belongs to the next unit
        if s + 3 >= len(pkt):
            continue
        head = pkt[s + 3]
        sei = (head & 0x1F) == 6 if codec == "h264" else ((head >> 1) & 0x3F) in (39, 40)
        if not sei:
            keep.append(pkt[begin:end])
    return b"".join(keep)


def _encode(codec: str, vframes: list[Any], fps: float, *, crf: float | None = None, bitrate: int | None = None,
            preset: str = "medium") -> list[bytes]:
    import av

    enc_name, _, label, extra = CODECS[codec]
    try:
        ctx = av.CodecContext.create(enc_name, "w")
    except Exception as e:
        raise CodecError(f"{label}: this PyAV build has no {enc_name} encoder ({e})") from None
    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
    ctx.width, ctx.height = vframes[0].width, vframes[0].height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = 1 / rate
    ctx.framerate = rate
    opts = {"preset": preset, **extra}
    if crf is not None:
        opts["crf"] = f"{crf:.3f}"
    else:
        ctx.bit_rate = max(1000, int(bitrate or 100_000))
    ctx.options = opts
    packets: list[bytes] = []
    try:
        for i, vf in enumerate(vframes):
            vf.pts = i
            packets.extend(bytes(p) for p in ctx.encode(vf))
        packets.extend(bytes(p) for p in ctx.encode(None))
    except Exception as e:
        raise CodecError(f"{label} encoding failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    packets = [_strip_sei(p, codec) for p in packets]
    return [p for p in packets if p]


def decode_stream(codec: str, data: bytes, packet_sizes: Sequence[int], width: int, height: int) -> list[Planes]:
    """Decode an elementary stream (split at ``packet_sizes``) to (Y, U, V) planes, cropped to
    ``width`` x ``height`` (undoing the even-size padding)."""
    import av

    _, dec_name, label, _ = CODECS[codec]
    ctx = av.CodecContext.create(dec_name, "r")
    out: list[Planes] = []
    cw, ch = (width + 1) // 2, (height + 1) // 2

    def take(frames: Any) -> None:
        for fr in frames:
            if fr.format.name not in ("yuv420p", "yuvj420p"):
                fr = fr.reformat(format="yuv420p")
            y, u, v = _frame_planes(fr)
            out.append((np.ascontiguousarray(y[:height, :width]), np.ascontiguousarray(u[:ch, :cw]),
                        np.ascontiguousarray(v[:ch, :cw])))

    try:
        pos = 0
        for n in packet_sizes:
            take(ctx.decode(av.Packet(data[pos: pos + n])))
            pos += n
        take(ctx.decode(None))
    except Exception as e:
        raise CodecError(f"{label} decoding failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return out


def encode_matched(frames_rgb: Sequence[np.ndarray] | np.ndarray, fps: float, codec: str, target_bytes: int,
                   tolerance: float = 0.05, progress: Progress | None = None, *,
                   preset: str = "medium", max_encodes: int = 14, crf_start: float = 23.0) -> EncodedClip:
    """Encode RGB frames (N x H x W x 3 uint8) with ``codec`` ("h264" | "h265") at a size within
    ``tolerance`` of ``target_bytes`` (see the module docstring). ``progress`` is updated after
    each trial encode and checked before each (``loupe.base.progress.Cancelled``)."""
    frames_yuv = [rgb_to_yuv420(np.asarray(f)) for f in frames_rgb]
    return encode_matched_yuv(frames_yuv, fps, codec, target_bytes, tolerance, progress, preset=preset,
                              max_encodes=max_encodes, crf_start=crf_start)


def encode_matched_yuv(frames_yuv: Sequence[Planes], fps: float, codec: str, target_bytes: int,
                       tolerance: float = 0.05, progress: Progress | None = None, *,
                       preset: str = "medium", max_encodes: int = 14, crf_start: float = 23.0) -> EncodedClip:
    """``encode_matched`` for frames already in (Y, U, V) planes. ``crf_start``: the first CRF
    tried (a good guess, e.g. from an encode of the same frames at another size, saves encodes)."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    if not len(frames_yuv):
        raise ValueError("no frames to encode")
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, got {target_bytes}")
    progress = as_progress(progress)
    t0 = time.perf_counter()
    height, width = frames_yuv[0][0].shape
    vframes = _video_frames(frames_yuv, width, height)
    n = len(vframes)
    attempts: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], list[bytes]] | None = None

    def trial(**kw: Any) -> int:
        nonlocal best
        progress.check()
        pkts = _encode(codec, vframes, fps, preset=preset, **kw)
        size = sum(len(p) for p in pkts)
        attempts.append({**kw, "bytes": size})
        err = abs(size - target_bytes) / target_bytes
        if best is None or err < best[0]:
            best = (err, dict(kw), pkts)
        progress.update(min(0.99, len(attempts) / 8.0))
        return size

    def ok(size: int) -> bool:
        return abs(size - target_bytes) <= tolerance * target_bytes

    # 1) CRF: bracket and interpolate log(size) linearly in CRF
    lo: tuple[float, int] | None = None  # (crf, size) with size > target
    hi: tuple[float, int] | None = None  # (crf, size) with size < target
    crf = min(CRF_RANGE[1], max(CRF_RANGE[0], float(crf_start)))
    done = False
    for _ in range(max_encodes):
        size = trial(crf=round(crf, 3))
        if ok(size):
            done = True
            break
        if size > target_bytes:
            lo = (crf, size) if lo is None or crf > lo[0] else lo
        else:
            hi = (crf, size) if hi is None or crf < hi[0] else hi
        if lo is not None and hi is not None:
            if hi[0] - lo[0] < 0.02:
                break  # the size jumps over the target between two CRFs this close
            f = (math.log(lo[1]) - math.log(target_bytes)) / (math.log(lo[1]) - math.log(hi[1]))
            nxt = lo[0] + min(0.9, max(0.1, f)) * (hi[0] - lo[0])
        else:
            # about 6 CRF per halving of the size
            nxt = crf + 6.0 * math.log2(size / target_bytes)
            nxt = min(CRF_RANGE[1], max(CRF_RANGE[0], nxt))
            if abs(nxt - crf) < 1e-6:
                break  # at the end of the CRF range and still off
        crf = nxt
    # 2) bitrate, scaled by the size error
    if not done:
        bitrate = target_bytes * 8.0 * (fps if fps > 0 else 25.0) / n
        last = None
        for _ in range(max(4, max_encodes // 2)):
            size = trial(bitrate=int(bitrate))
            if ok(size):
                done = True
                break
            if last is not None and size > target_bytes and size >= last:
                break  # the encoder's floor: a lower bitrate no longer makes the stream smaller
            last = size
            bitrate *= target_bytes / size
            if bitrate < 1000:
                break  # below what the encoders accept
    assert best is not None
    _, kw, pkts = best
    size = sum(len(p) for p in pkts)
    progress.update(1.0)
    return EncodedClip(
        codec=codec, bytes=size, crf=kw.get("crf"), bitrate=kw.get("bitrate"), data=b"".join(pkts),
        packet_sizes=[len(p) for p in pkts], width=width, height=height, fps=float(fps), frames=n,
        target_bytes=int(target_bytes), matched=ok(size), tolerance=tolerance, attempts=attempts,
        seconds=time.perf_counter() - t0, preset=preset,
    )


def encode_at(frames_yuv: Sequence[Planes], fps: float, codec: str, *, crf: float | None = None,
              bitrate: int | None = None, preset: str = "medium") -> EncodedClip:
    """One encode at a given CRF or bitrate (no search)."""
    t0 = time.perf_counter()
    height, width = frames_yuv[0][0].shape
    pkts = _encode(codec, _video_frames(frames_yuv, width, height), fps, crf=crf, bitrate=bitrate, preset=preset)
    size = sum(len(p) for p in pkts)
    return EncodedClip(codec=codec, bytes=size, crf=crf, bitrate=bitrate, data=b"".join(pkts),
                       packet_sizes=[len(p) for p in pkts], width=width, height=height, fps=float(fps),
                       frames=len(frames_yuv), target_bytes=size, matched=True, tolerance=0.0,
                       attempts=[{"crf": crf, "bitrate": bitrate, "bytes": size}],
                       seconds=time.perf_counter() - t0, preset=preset)
