"""The .hnerv representation file: quantisation, canonical Huffman, exact round trip."""

from __future__ import annotations

import numpy as np
import pytest

from loupe_models.fitters import hnerv_codec as hc


def _entropy_bytes(sym: np.ndarray) -> float:
    p = np.bincount(sym) / sym.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum() * sym.size / 8)


@pytest.mark.parametrize("n", [1, 7, hc.BLOCK, hc.BLOCK + 1, 3 * hc.BLOCK + 17])
def test_huffman_round_trip_and_rate(n):
    rng = np.random.default_rng(n)
    sym = np.clip(np.rint(rng.normal(128, 12, n)), 0, 255).astype(np.int64)
    lengths = hc.huffman_lengths(np.bincount(sym, minlength=256))
    block_bits, data = hc.huffman_encode(sym, lengths)
    assert np.array_equal(hc.huffman_decode(data, block_bits, lengths, n), sym)
    if n > 1000:  # Huffman is within a few % of the entropy for such a source
        assert len(data) <= 1.03 * _entropy_bytes(sym) + 4 * len(block_bits)
        assert len(data) < 0.9 * n  # well under the 8 bits a raw byte would take


def test_huffman_single_symbol_and_skewed_alphabet():
    sym = np.full(1000, 5)
    lengths = hc.huffman_lengths(np.bincount(sym, minlength=64))
    bb, data = hc.huffman_encode(sym, lengths)
    assert len(data) == 125  # one bit each
    assert np.array_equal(hc.huffman_decode(data, bb, lengths, 1000), sym)
    # a geometric distribution would need codes longer than the limit: they are capped
    counts = np.array([2**i for i in range(40, 0, -1)] + [1] * 24, dtype=np.int64)
    lengths = hc.huffman_lengths(counts)
    assert lengths.max() <= hc.MAX_CODE_LEN and (lengths > 0).all()
    kraft = np.sum(2.0 ** -lengths.astype(float))
    assert kraft <= 1.0


def test_quantise_picks_per_channel_when_channels_differ():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (64, 32, 3, 3)).astype(np.float32)
    w *= np.logspace(-3, 0, 64, dtype=np.float32)[:, None, None, None]
    qt = hc.quantize(w, 8)
    assert qt.axis == 0 and qt.min.dtype == np.float16
    assert qt.q.max() <= 255
    deq = qt.dequantize()
    per_tensor = (w.max() - w.min()) / 255
    # one step for the whole tensor would give a mean error of about per_tensor / 4
    assert np.abs(deq - w).mean() < per_tensor / 20
    small = hc.quantize(np.linspace(-1, 1, 10, dtype=np.float32), 6)  # 1-d: per tensor
    assert small.axis is None and small.q.max() == 63 and small.q.min() == 0
    const = hc.quantize(np.full((4, 4), 0.25, np.float32), 8)  # zero range, no division by 0
    assert np.array_equal(const.dequantize(), np.full((4, 4), 0.25, np.float32))


def _state(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "decoder.0.conv.downconv.weight": rng.normal(0, 0.2, (40, 16, 1, 1)).astype(np.float32),
        "decoder.0.conv.downconv.bias": rng.normal(0, 0.05, 40).astype(np.float32),
        "decoder.1.conv.upconv.0.weight": rng.normal(0, 0.1, (132, 40, 3, 3)).astype(np.float32),
        "decoder.1.conv.upconv.0.bias": rng.normal(0, 0.05, 132).astype(np.float32),
        "head_layer.weight": rng.normal(0, 0.1, (3, 33, 3, 3)).astype(np.float32),
        "head_layer.bias": np.zeros(3, np.float32),
    }


def test_file_round_trip_is_exact():
    rng = np.random.default_rng(1)
    state = _state(rng)
    emb = rng.normal(0, 1, (30, 16, 2, 2)).astype(np.float32)
    cfg = {"fc_dim": 40, "out_size": [144, 144]}
    data = hc.encode_representation(state, emb, 8, 6, config=cfg, meta={"clip": "x.mp4"})
    config, sd, emb_q = hc.decode_representation(data)
    assert config == cfg
    assert list(sd) == list(state)  # order kept
    rep = hc.read_representation(data)
    assert rep.meta == {"clip": "x.mp4"} and rep.nbytes == len(data)
    for name, w in state.items():
        qt = rep.tensors[name]
        want = qt.min.astype(np.float32) + qt.scale.astype(np.float32) * qt.q.astype(np.float32)
        assert sd[name].dtype == np.float32 and sd[name].shape == w.shape
        assert np.array_equal(sd[name], want)  # exactly min + scale * q
        assert qt.q.max() <= 255
        step = np.max(qt.scale.astype(np.float32))
        assert np.abs(sd[name] - w).max() <= 0.5 * step + 1e-6  # and that is close to w
    assert rep.embeddings.q.max() <= 63
    e = rep.embeddings
    assert np.array_equal(emb_q, e.min.astype(np.float32) + e.scale.astype(np.float32)
                          * e.q.astype(np.float32))
    assert emb_q.shape == emb.shape
    # re-quantising the decoded values reproduces the very same symbols (idempotent)
    again = hc.read_representation(hc.encode_representation(sd, emb_q, 8, 6, config=cfg))
    for name in state:
        assert np.array_equal(again.tensors[name].q, rep.tensors[name].q)
    # entropy coding pays: smaller than 1 byte per weight + 6 bits per embedding value
    raw = sum(w.size for w in state.values()) + emb.size * 6 / 8
    assert len(data) < raw


def test_damaged_files_raise_a_clear_error():
    rng = np.random.default_rng(2)
    data = hc.encode_representation(_state(rng), rng.normal(size=(4, 16, 2, 2)), 8, 6)
    with pytest.raises(hc.HNeRVFileError, match="magic"):
        hc.decode_representation(b"PK\x03\x04" + data[4:])
    with pytest.raises(hc.HNeRVFileError, match="truncated|Huffman|stream"):
        hc.decode_representation(data[:-10])
    with pytest.raises(hc.HNeRVFileError, match="trailing"):
        hc.decode_representation(data + b"\0")
    with pytest.raises(hc.HNeRVFileError):
        hc.decode_representation(b"HNRV\x01\x05\x00\x00\x00abcde")


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    state = {"w": torch.linspace(-1, 1, 300).reshape(3, 100)}
    _, sd, emb = hc.decode_representation(
        hc.encode_representation(state, torch.zeros(2, 4, 1, 1), 8, 6))
    assert np.abs(sd["w"] - state["w"].numpy()).max() <= 1 / 255 + 1e-6
    assert np.array_equal(emb, np.zeros((2, 4, 1, 1), np.float32))
