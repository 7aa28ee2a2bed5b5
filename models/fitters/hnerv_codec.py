"""Quantise an HNeRV representation and entropy-code it into one ``.hnerv`` file.

What HNeRV stores for a video is the decoder's weights and one small embedding per frame.
Following the paper (Chen et al., CVPR 2023, section 3.4 and the official ``quant_tensor``):

- every decoder tensor is quantised to ``weight_bits`` (8) bits, every frame embedding to
  ``embed_bits`` (6) bits, as ``value = min + scale * q`` with ``q`` an integer in
  ``0 .. 2**bits - 1``. ``min``/``scale`` are either one scalar for the whole tensor or one
  value per slice along one axis (kept only when that costs under 2 % of the tensor's
  element count); the variant with the smallest mean absolute error wins. Scalars are
  stored as float32, per-axis vectors as float16.
- the integer symbols are entropy-coded with **canonical Huffman** codes (the paper uses
  Huffman coding on the quantised values): one code table for all weight symbols, one for
  the embedding symbols.

The file (all integers little-endian)::

    b"HNRV" | u8 version (1) | u32 n | n bytes: zlib(JSON header)
    | min/scale arrays, in header order (float32 scalars / float16 vectors)
    | per stream: Huffman code lengths (one byte per symbol value), u32 bit length of every
      block, the bit stream (each block starts on a byte boundary).

The header holds the model configuration (whatever JSON the caller passes), the tensor
names, shapes, bit depths and quantisation axes, and the stream sizes. Blocks of
``BLOCK`` symbols let the decoder walk all blocks at once with numpy (one vectorised step
per symbol position inside a block instead of one Python step per symbol): about
0.1 % of overhead for about a hundred times faster decoding.

Bits per pixel of a fitted clip = ``8 * len(file) / (frames * H * W)``: the decoder is
in the file, so nothing else has to be sent.

This module needs numpy only (no torch): tensors passed in may be torch tensors or
arrays; decoded tensors are float32 numpy arrays.
"""

from __future__ import annotations

import heapq
import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from loupe.base.errors import LoupeError

__all__ = [
    "BLOCK",
    "MAGIC",
    "HNeRVFileError",
    "QuantizedTensor",
    "Representation",
    "canonical_codes",
    "decode_representation",
    "dequantize",
    "encode_representation",
    "huffman_decode",
    "huffman_encode",
    "huffman_lengths",
    "quantize",
    "read_representation",
]

MAGIC = b"HNRV"
VERSION = 1
BLOCK = 4096  # symbols per independently decodable block
MAX_CODE_LEN = 16  # Huffman code lengths are limited to this (lookup table of 2**16)
MAX_PER_AXIS_SHARE = 0.02  # per-axis min/scale only when they cost < 2 % of the elements


class HNeRVFileError(LoupeError, ValueError):
    """A ``.hnerv`` file is damaged or not one."""


def _to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):  # torch tensor, without importing torch
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, dtype=np.float32)


# --------------------------------------------------------------------------------------
# quantisation
# --------------------------------------------------------------------------------------
@dataclass
class QuantizedTensor:
    """``value = min + scale * q`` (float32 arithmetic, ``min``/``scale`` broadcast)."""

    q: np.ndarray  # integer symbols, uint8 (bits <= 8) or uint16, tensor shape
    min: np.ndarray  # float32 scalar () or float16 with one non-1 axis (keepdims shape)
    scale: np.ndarray
    bits: int
    axis: int | None  # None: one scalar for the tensor

    def dequantize(self) -> np.ndarray:
        return dequantize(self.q, self.min, self.scale)


def dequantize(q: np.ndarray, vmin: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``min + scale * q`` in float32 (the one formula used everywhere)."""
    m = np.asarray(vmin).astype(np.float32)
    s = np.asarray(scale).astype(np.float32)
    return (m + s * np.asarray(q).astype(np.float32)).astype(np.float32)


def _quant_with(t: np.ndarray, vmin: np.ndarray, scale: np.ndarray, bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    m = vmin.astype(np.float32)
    s = scale.astype(np.float32)
    safe = np.where(s > 0, s, np.float32(1.0))
    q = np.rint((t - m) / safe)
    q = np.where(s > 0, q, 0.0)
    return np.clip(q, 0, levels).astype(np.uint8 if bits <= 8 else np.uint16)


def quantize(t: Any, bits: int) -> QuantizedTensor:
    """Quantise ``t`` to ``bits`` bits, choosing per-tensor or per-axis min/scale by the
    smallest mean absolute error of the dequantised values (ties: per-tensor)."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be 1..16, got {bits}")
    x = _to_numpy(t)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantise a tensor with NaN or infinite values")
    levels = (1 << bits) - 1
    candidates: list[tuple[np.ndarray, np.ndarray, int | None]] = []
    if x.size:
        lo, hi = np.float32(x.min()), np.float32(x.max())
    else:
        lo = hi = np.float32(0.0)
    candidates.append((np.array(lo, np.float32), np.array((hi - lo) / levels, np.float32), None))
    for axis in range(x.ndim):
        others = tuple(a for a in range(x.ndim) if a != axis)
        n_params = x.shape[axis]
        if x.size == 0 or n_params / x.size >= MAX_PER_AXIS_SHARE or not others:
            continue
        amin = x.min(axis=others, keepdims=True)
        amax = x.max(axis=others, keepdims=True)
        m16 = amin.astype(np.float16)
        # scale from the float16 min so that the top level still reaches the maximum
        s16 = ((amax - m16.astype(np.float32)) / levels).astype(np.float16)
        candidates.append((m16, s16, axis))
    best: QuantizedTensor | None = None
    best_err = np.inf
    for vmin, scale, axis in candidates:
        q = _quant_with(x, vmin, scale, bits)
        err = float(np.mean(np.abs(dequantize(q, vmin, scale) - x))) if x.size else 0.0
        if err < best_err:
            best_err = err
            best = QuantizedTensor(q=q, min=vmin, scale=scale, bits=bits, axis=axis)
    assert best is not None
    return best


# --------------------------------------------------------------------------------------
# canonical Huffman
# --------------------------------------------------------------------------------------
def huffman_lengths(counts: np.ndarray, max_len: int = MAX_CODE_LEN) -> np.ndarray:
    """Code length per symbol (0 for unused symbols) of a Huffman code for ``counts``,
    limited to ``max_len`` bits (counts are flattened until the limit holds)."""
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    if n > (1 << max_len):
        raise ValueError("alphabet larger than the code-length limit allows")
    used = np.flatnonzero(counts > 0)
    lengths = np.zeros(n, np.uint8)
    if len(used) == 0:
        return lengths
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    work = counts.copy()
    while True:
        heap: list[tuple[int, int, list[int]]] = [
            (int(work[s]), int(s), [int(s)]) for s in used
        ]
        heapq.heapify(heap)
        depth = np.zeros(n, np.int64)
        tie = n
        while len(heap) > 1:
            c1, _, s1 = heapq.heappop(heap)
            c2, _, s2 = heapq.heappop(heap)
            merged = s1 + s2
            depth[merged] += 1
            heapq.heappush(heap, (c1 + c2, tie, merged))
            tie += 1
        if depth.max() <= max_len:
            lengths[:] = depth
            return lengths
        # flatten the distribution (keeps every used symbol at count >= 1) and retry
        work[used] = (work[used] + 1) // 2


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code values (MSB first) for code ``lengths`` (0 = unused symbol): codes
    are assigned in order of (length, symbol)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), np.int64)
    order = sorted((int(length), s) for s, length in enumerate(lengths) if length > 0)
    code = 0
    prev = 0
    for length, s in order:
        code <<= length - prev
        codes[s] = code
        code += 1
        prev = length
    if order and code > (1 << prev):
        raise HNeRVFileError("code lengths do not form a prefix code")
    return codes


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray, block: int = BLOCK
                   ) -> tuple[np.ndarray, bytes]:
    """(bit length of each block as uint32, the stream bytes). Each block of ``block``
    symbols starts on a byte boundary. Fully vectorised."""
    sym = np.asarray(symbols).reshape(-1).astype(np.int64)
    if sym.size == 0:
        return np.zeros(0, np.uint32), b""
    lengths = np.asarray(lengths, dtype=np.int64)
    if np.any(lengths[sym] == 0):
        raise ValueError("a symbol has no code")
    codes = canonical_codes(lengths)
    n_blocks = -(-sym.size // block)
    sym_len = lengths[sym]
    sym_code = codes[sym]
    # bits of each block, padded to whole bytes
    block_id = np.arange(sym.size) // block
    block_bits = np.bincount(block_id, weights=sym_len, minlength=n_blocks).astype(np.int64)
    block_bytes = (block_bits + 7) // 8
    block_start = np.concatenate([[0], np.cumsum(block_bytes)[:-1]]) * 8
    # start bit of every symbol = its block's start + bits of earlier symbols in the block
    csum = np.cumsum(sym_len) - sym_len
    first_in_block = csum[np.arange(n_blocks) * block]
    start = block_start[block_id] + csum - first_in_block[block_id]
    total_bits = int(block_bytes.sum()) * 8
    bits = np.zeros(total_bits, np.uint8)
    rep_start = np.repeat(start, sym_len)
    rep_len = np.repeat(sym_len, sym_len)
    rep_code = np.repeat(sym_code, sym_len)
    within = np.arange(rep_start.size) - np.repeat(np.cumsum(sym_len) - sym_len, sym_len)
    bits[rep_start + within] = ((rep_code >> (rep_len - 1 - within)) & 1).astype(np.uint8)
    return block_bits.astype(np.uint32), np.packbits(bits).tobytes()


def huffman_decode(data: bytes, block_bits: np.ndarray, lengths: np.ndarray, count: int,
                   block: int = BLOCK) -> np.ndarray:
    """Inverse of :func:`huffman_encode`: ``count`` symbols (int64). All blocks are decoded
    side by side, one numpy step per symbol position within a block."""
    if count == 0:
        return np.zeros(0, np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    max_len = int(lengths.max()) if lengths.size else 0
    if max_len == 0 or max_len > MAX_CODE_LEN:
        raise HNeRVFileError("bad Huffman code lengths")
    codes = canonical_codes(lengths)
    # lookup table over the next max_len bits: symbol and its code length
    table_sym = np.full(1 << max_len, -1, np.int64)
    table_len = np.zeros(1 << max_len, np.int64)
    for s in np.flatnonzero(lengths):
        length = int(lengths[s])
        lo = int(codes[s]) << (max_len - length)
        hi = lo + (1 << (max_len - length))
        table_sym[lo:hi] = s
        table_len[lo:hi] = length
    n_blocks = -(-count // block)
    block_bits = np.asarray(block_bits, dtype=np.int64)
    if block_bits.size != n_blocks:
        raise HNeRVFileError("block table does not match the symbol count")
    block_bytes = (block_bits + 7) // 8
    if int(block_bytes.sum()) != len(data):
        raise HNeRVFileError("stream length does not match its block table")
    buf = np.frombuffer(data + b"\0\0\0\0", dtype=np.uint8).astype(np.int64)
    pos = np.concatenate([[0], np.cumsum(block_bytes)[:-1]]) * 8
    end = pos + block_bits
    per_block = np.full(n_blocks, block, np.int64)
    per_block[-1] = count - block * (n_blocks - 1)
    out = np.zeros((n_blocks, block), np.int64)
    shift = 32 - max_len
    for j in range(int(per_block.max())):
        live = per_block > j
        p = pos if live.all() else pos[live]
        i = p >> 3
        word = (buf[i] << 24) | (buf[i + 1] << 16) | (buf[i + 2] << 8) | buf[i + 3]
        idx = ((word << (p & 7)) & 0xFFFFFFFF) >> shift
        s = table_sym[idx]
        if np.any(s < 0):
            raise HNeRVFileError("invalid Huffman code in stream")
        if live.all():
            out[:, j] = s
            pos = pos + table_len[idx]
        else:
            out[live, j] = s
            pos[live] = p + table_len[idx]
    if np.any(pos != end):
        raise HNeRVFileError("Huffman stream does not end where its block table says")
    return out.reshape(-1)[:count]  # only the last block can be partial


# --------------------------------------------------------------------------------------
# the file
# --------------------------------------------------------------------------------------
@dataclass
class Representation:
    """What :func:`read_representation` returns: everything in a ``.hnerv`` file."""

    config: dict[str, Any]
    tensors: dict[str, QuantizedTensor]  # decoder state, in file order
    embeddings: QuantizedTensor
    meta: dict[str, Any]
    nbytes: int

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.dequantize() for k, v in self.tensors.items()}


def _stream(symbols: list[np.ndarray], bits: int) -> tuple[dict[str, Any], bytes]:
    sym = np.concatenate([s.reshape(-1) for s in symbols]) if symbols else np.zeros(0, np.int64)
    counts = np.bincount(sym.astype(np.int64), minlength=1 << bits)
    lengths = huffman_lengths(counts)
    block_bits, data = huffman_encode(sym, lengths)
    payload = lengths.astype(np.uint8).tobytes() + block_bits.astype("<u4").tobytes() + data
    return {"count": int(sym.size), "alphabet": 1 << bits, "blocks": int(block_bits.size),
            "data_bytes": len(data)}, payload


def encode_representation(
    decoder_state: Mapping[str, Any],
    embeddings: Any,
    weight_bits: int = 8,
    embed_bits: int = 6,
    *,
    config: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> bytes:
    """Quantise ``decoder_state`` (name -> float tensor, in order) to ``weight_bits`` and
    ``embeddings`` (frames x ...) to ``embed_bits``, entropy-code them and return the file
    bytes. ``config`` (JSON-able, e.g. the decoder's configuration) and ``meta`` (anything
    else: clip, crop, fps...) go into the header."""
    if not 1 <= weight_bits <= 8 or not 1 <= embed_bits <= 8:
        raise ValueError("weight_bits and embed_bits must be 1..8")
    entries = []
    minscale = bytearray()
    weight_syms = []
    for name, t in decoder_state.items():
        qt = quantize(t, weight_bits)
        entries.append(_entry(name, qt))
        minscale += _minscale_bytes(qt)
        weight_syms.append(qt.q)
    qe = quantize(embeddings, embed_bits)
    emb_entry = _entry("embeddings", qe)
    minscale += _minscale_bytes(qe)
    w_info, w_payload = _stream(weight_syms, weight_bits)
    e_info, e_payload = _stream([qe.q], embed_bits)
    header = {
        "format": "loupe-hnerv", "version": VERSION, "block": BLOCK,
        "weight_bits": weight_bits, "embed_bits": embed_bits,
        "config": dict(config or {}), "meta": dict(meta or {}),
        "tensors": entries, "embeddings": emb_entry,
        "streams": {"weights": w_info, "embeddings": e_info},
    }
    hz = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    return b"".join([MAGIC, struct.pack("<BI", VERSION, len(hz)), hz, bytes(minscale),
                     w_payload, e_payload])


def _entry(name: str, qt: QuantizedTensor) -> dict[str, Any]:
    return {"name": name, "shape": list(qt.q.shape), "bits": qt.bits,
            "axis": qt.axis}


def _minscale_bytes(qt: QuantizedTensor) -> bytes:
    if qt.axis is None:
        return np.asarray([qt.min, qt.scale], "<f4").tobytes()
    return (np.asarray(qt.min, "<f2").reshape(-1).tobytes()
            + np.asarray(qt.scale, "<f2").reshape(-1).tobytes())


class _Reader:
    def __init__(self, data: bytes, offset: int) -> None:
        self.data, self.off = data, offset

    def take(self, n: int) -> bytes:
        if n < 0 or self.off + n > len(self.data):
            raise HNeRVFileError("file is truncated")
        out = self.data[self.off:self.off + n]
        self.off += n
        return out


def _read_minscale(r: _Reader, shape: list[int], axis: int | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    if axis is None:
        v = np.frombuffer(r.take(8), "<f4")
        return np.array(v[0], np.float32), np.array(v[1], np.float32)
    if not 0 <= axis < len(shape):
        raise HNeRVFileError("bad quantisation axis")
    n = shape[axis]
    kshape = [1] * len(shape)
    kshape[axis] = n
    vmin = np.frombuffer(r.take(2 * n), "<f2").reshape(kshape).astype(np.float16)
    scale = np.frombuffer(r.take(2 * n), "<f2").reshape(kshape).astype(np.float16)
    return vmin, scale


def read_representation(data: bytes) -> Representation:
    """Parse and entropy-decode a ``.hnerv`` file (raises :class:`HNeRVFileError`)."""
    data = bytes(data)
    if len(data) < 9 or data[:4] != MAGIC:
        raise HNeRVFileError("not an HNeRV representation file (bad magic)")
    version, hlen = struct.unpack("<BI", data[4:9])
    if version != VERSION:
        raise HNeRVFileError(f"unsupported .hnerv version {version}")
    r = _Reader(data, 9)
    try:
        header = json.loads(zlib.decompress(r.take(hlen)))
    except (zlib.error, ValueError) as exc:
        raise HNeRVFileError(f"damaged header: {exc}") from exc
    try:
        block = int(header["block"])
        entries = header["tensors"]
        emb_entry = header["embeddings"]
        streams = header["streams"]
        ms = [_read_minscale(r, e["shape"], e["axis"]) for e in entries]
        ems = _read_minscale(r, emb_entry["shape"], emb_entry["axis"])

        def read_stream(info: dict[str, Any]) -> np.ndarray:
            lengths = np.frombuffer(r.take(int(info["alphabet"])), np.uint8)
            block_bits = np.frombuffer(r.take(4 * int(info["blocks"])), "<u4")
            payload = r.take(int(info["data_bytes"]))
            return huffman_decode(payload, block_bits, lengths, int(info["count"]), block)

        wsym = read_stream(streams["weights"])
        esym = read_stream(streams["embeddings"])
    except (KeyError, TypeError) as exc:
        raise HNeRVFileError(f"damaged header: missing {exc}") from exc
    if r.off != len(data):
        raise HNeRVFileError("trailing bytes after the streams")
    tensors: dict[str, QuantizedTensor] = {}
    off = 0
    qdtype = np.uint8
    for e, (vmin, scale) in zip(entries, ms):
        n = int(np.prod(e["shape"], dtype=np.int64))
        q = wsym[off:off + n].astype(qdtype).reshape(e["shape"])
        off += n
        tensors[e["name"]] = QuantizedTensor(q=q, min=vmin, scale=scale, bits=int(e["bits"]),
                                             axis=e["axis"])
    if off != wsym.size:
        raise HNeRVFileError("weight symbol count does not match the tensor shapes")
    eq = esym.astype(qdtype).reshape(emb_entry["shape"])
    emb = QuantizedTensor(q=eq, min=ems[0], scale=ems[1], bits=int(emb_entry["bits"]),
                          axis=emb_entry["axis"])
    return Representation(config=header.get("config", {}), tensors=tensors, embeddings=emb,
                          meta=header.get("meta", {}), nbytes=len(data))


def decode_representation(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray],
                                                 np.ndarray]:
    """``(config, dequantised decoder state_dict, dequantised embeddings)`` of a file made
    by :func:`encode_representation` (float32 numpy arrays, ``min + scale * q``)."""
    rep = read_representation(data)
    return rep.config, rep.state_dict(), rep.embeddings.dequantize()
