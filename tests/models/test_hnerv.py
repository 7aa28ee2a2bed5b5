"""HNeRV: official layout, golden outputs, config rule, checkpoint import, compression export."""

from __future__ import annotations

import json
import pickle

import numpy as np
import onnx
import pytest
import torch

from loupe.inference.card import ModelCard
from loupe.inference.engine import Engine
from loupe_models import golden
from loupe_models.checkpoint import CheckpointError
from loupe_models.exporters.hnerv import EXPORT_ATOL, centre_crop_box, export_compression, main
from loupe_models.nets.hnerv import (
    HNeRV,
    HNeRVConfig,
    HNeRVDecoder,
    bunny_1p5m_config,
    centre_crop_for,
    choose_strides,
    config_for,
    dequantize,
    load_quant_vid,
    load_training_checkpoint,
)

FULL = "hnerv_bunny_1.5m"
DECODER = "hnerv_bunny_1.5m_decoder"


TORCH_THREADS = 4  # at most (tests/models/conftest.py sets and restores torch's threads)


def tiny_config(out_size=(32, 48), strides=(4, 2)) -> HNeRVConfig:
    return HNeRVConfig(
        out_size=out_size,
        enc_strides=strides,
        dec_strides=strides,
        fc_dim=16,
        enc_dim=8,
        embed_dim=4,
    )


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------
# (a) layout and parameter counts
# --------------------------------------------------------------------------------------
def test_full_model_layout_equals_official():
    ref = golden.load_reference(FULL)
    model = HNeRV(bunny_1p5m_config())
    assert golden.check_layout(model.state_dict(), ref) == []
    assert _n_params(model) == ref["total_params"] == 1_794_436
    parts = ref["param_breakdown"]
    assert _n_params(model.encoder) == parts["encoder"]
    assert _n_params(model.decoder) == parts["decoder_ModuleList"]
    assert _n_params(model.head_layer) == parts["head_layer"]


def test_decoder_layout_equals_official():
    ref = golden.load_reference(DECODER)
    cfg = bunny_1p5m_config()
    dec = HNeRVDecoder(cfg)
    assert golden.check_layout(dec.state_dict(), ref) == []
    assert _n_params(dec) == ref["total_params"] == cfg.decoder_params() == 1_488_276
    # the frame embedding 16 x 2 x 4, 132 frames -> 16,896 values (not in the state dict)
    assert cfg.embed_shape == (16, 2, 4)
    assert (
        132 * cfg.embed_values
        == golden.load_reference(FULL)["param_breakdown"]["frame_embeddings_not_in_state_dict"]
    )
    # the decoder wrapper of a full model shares its modules and keys
    full = HNeRV(cfg)
    shared = full.decoder_model()
    assert list(shared.state_dict()) == list(dec.state_dict())
    assert shared.decoder is full.decoder


# --------------------------------------------------------------------------------------
# (b) golden outputs
# --------------------------------------------------------------------------------------
def _filled(model: torch.nn.Module, gold: dict) -> torch.nn.Module:
    sd = golden.fill_state_dict(model)
    assert golden.check_fill(sd, gold["fill_check"]) == []
    model.load_state_dict(sd, strict=True)
    return model.eval()


def test_golden_decoder():
    gold = golden.load_golden(DECODER)
    dec = _filled(HNeRVDecoder(bunny_1p5m_config()), gold)
    emb = golden.golden_input_for(gold)
    assert golden.check_input(emb, gold["input"]) == []
    with torch.no_grad():
        frame = dec(emb)
    failures = golden.compare_outputs({"frame": frame}, gold)
    assert failures == [], "\n".join(failures)


def test_golden_full_model():
    gold = golden.load_golden(FULL)
    model = _filled(HNeRV(bunny_1p5m_config()), gold)
    x = golden.golden_input_for(gold)
    assert golden.check_input(x, gold["input"]) == []
    with torch.no_grad():
        recon, emb = model(x)
        assert torch.equal(model.encode(x), emb)
    failures = golden.compare_outputs({"recon": recon, "embedding": emb}, gold)
    assert failures == [], "\n".join(failures)


def test_golden_rejects_tanh_gelu():
    """The golden tolerance notices the tanh approximation of GELU (exact erf is official)."""
    gold = golden.load_golden(DECODER)
    dec = _filled(HNeRVDecoder(bunny_1p5m_config()), gold)
    for m in dec.modules():
        if isinstance(m, torch.nn.GELU):
            m.approximate = "tanh"
    with torch.no_grad():
        frame = dec(golden.golden_input_for(gold))
    assert golden.compare_outputs({"frame": frame}, gold) != []


# --------------------------------------------------------------------------------------
# (c) configuration rule
# --------------------------------------------------------------------------------------
def test_config_for_carphone_size_and_budget():
    cfg = config_for((144, 176), 0.3e6)
    assert cfg.enc_strides == cfg.dec_strides == (2, 2, 2, 2)
    assert cfg.embed_shape == (16, 9, 11)
    dec = HNeRVDecoder(cfg)
    n = _n_params(dec)
    assert n == cfg.decoder_params()
    assert abs(n - 0.3e6) <= 0.1 * 0.3e6
    with torch.no_grad():
        out = dec(torch.randn(2, *cfg.embed_shape))
    assert tuple(out.shape) == (2, 3, 144, 176)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # the full model round-trips a frame of that size
    with torch.no_grad():
        recon, emb = HNeRV(cfg)(torch.rand(1, 3, 144, 176))
    assert tuple(recon.shape) == (1, 3, 144, 176) and tuple(emb.shape) == (1, 16, 9, 11)
    # a larger budget gives a wider decoder
    assert config_for((144, 176), 1e6).fc_dim > cfg.fc_dim


def test_config_for_reproduces_bunny():
    cfg = config_for((640, 1280), 1.5e6)
    assert cfg.enc_strides == cfg.dec_strides == (5, 4, 4, 2, 2)
    assert cfg.embed_shape == (16, 2, 4)
    assert abs(cfg.decoder_params() - 1.5e6) <= 0.03 * 1.5e6
    # budget as the official --modelsize (decoder + 132 frame embeddings): exactly the README model
    assert config_for((640, 1280), 1.5e6, frames=132) == bunny_1p5m_config()


@pytest.mark.parametrize(
    ("hw", "strides"),
    [
        ((640, 1280), (5, 4, 4, 2, 2)),
        ((960, 1920), (5, 4, 4, 3, 2)),
        ((144, 176), (2, 2, 2, 2)),
        ((1080, 1920), (5, 3, 2, 2, 2)),
        ((272, 640), (2, 2, 2, 2)),
    ],
)
def test_choose_strides(hw, strides):
    got = choose_strides(hw)
    assert got == strides
    p = int(np.prod(got))
    assert hw[0] % p == 0 and hw[1] % p == 0 and min(hw) // p >= 2


def test_centre_crop_for_official_crops():
    assert centre_crop_for((720, 1280)) == (40, 0, 640, 1280)  # bunny, strides 5,4,4,2,2
    assert centre_crop_for((1080, 1920)) == (60, 0, 960, 1920)  # UVG, strides 5,4,4,3,2
    assert centre_crop_for((135, 241)) == (8, 0, 120, 240)  # odd sizes: even crop
    assert choose_strides((120, 240)) == (5, 3, 2, 2)
    assert centre_crop_for((640, 1280)) == (0, 0, 640, 1280)


def test_config_errors():
    with pytest.raises(ValueError, match="no common stride"):
        choose_strides((135, 241))
    with pytest.raises(ValueError, match="below the smallest decoder"):
        config_for((144, 176), 1000)
    with pytest.raises(ValueError, match="does not even hold"):
        config_for((144, 176), 0.1e6, frames=120)
    with pytest.raises(ValueError, match="not a multiple of the encoder stride"):
        HNeRVConfig(out_size=(100, 100), enc_strides=(4, 4), dec_strides=(4, 4), fc_dim=8)
    cfg = config_for((144, 176), 0.3e6)
    assert HNeRVConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# --------------------------------------------------------------------------------------
# (d) official checkpoints
# --------------------------------------------------------------------------------------
def _training_checkpoint(path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An official-style training checkpoint: DataParallel ``module.`` prefix, an old
    ``blocks.0.`` infix on the decoder keys, epoch and optimizer state."""
    sd = golden.fill_state_dict(model)
    wrapped = {}
    for k, v in sd.items():
        name = k.replace("decoder.1.conv", "decoder.1.blocks.0.conv")
        wrapped["module." + name] = v
    opt = {"state": {}, "param_groups": [{"lr": 1e-3, "params": list(range(len(sd)))}]}
    torch.save({"epoch": 300, "state_dict": wrapped, "optimizer": opt}, path)
    return sd


def test_training_checkpoint_loads(tmp_path):
    cfg = tiny_config()
    path = tmp_path / "hnerv-e300.pth"
    sd = _training_checkpoint(path, HNeRV(cfg))
    model, report = load_training_checkpoint(path, cfg)
    assert report.complete and report.summary() == "all keys matched"
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_training_checkpoint_reports_missing_and_unexpected(tmp_path):
    cfg = tiny_config()
    sd = golden.fill_state_dict(HNeRV(cfg))
    del sd["decoder.2.conv.upconv.0.bias"]
    sd["encoder.extra.weight"] = torch.zeros(3)
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys: decoder\.2\.conv\.upconv\.0\.bias"):
        load_training_checkpoint(path, cfg)
    # the official loader's strict=False, with the leftovers named instead of dropped silently
    model, report = load_training_checkpoint(path, cfg, strict=False)
    assert report.missing == ("decoder.2.conv.upconv.0.bias",)
    assert report.unexpected == ("encoder.extra.weight",)
    assert "1 unexpected keys: encoder.extra.weight" in report.summary()
    assert torch.equal(model.head_layer.weight, sd["head_layer.weight"])
    # a checkpoint of another configuration names the shape mismatches
    other = tmp_path / "other.pth"
    torch.save({"state_dict": golden.fill_state_dict(HNeRV(bunny_1p5m_config()))}, other)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_training_checkpoint(other, tiny_config(), strict=False)


def _quantise(t: torch.Tensor, bits: int, reduce_dims, keep: bool = True, fp16: bool = True):
    """Official-style min/scale quantisation; ``reduce_dims`` None = per tensor (python floats)."""
    levels = 2**bits - 1
    if reduce_dims is None:
        tmin, tmax = float(t.min()), float(t.max())
        scale = (tmax - tmin) / levels
        q = ((t - tmin) / scale).round().clamp(0, levels).to(torch.uint8)
        return {"quant": q, "min": tmin, "scale": scale}
    tmin = t.amin(dim=reduce_dims, keepdim=True)
    tmax = t.amax(dim=reduce_dims, keepdim=True)
    if fp16:
        tmin, tmax = tmin.half(), tmax.half()
    scale = (tmax - tmin) / levels
    q = ((t - tmin.float()) / scale.float()).round().clamp(0, levels).to(torch.uint8)
    if not keep:  # drop leading singleton dims: still broadcasts against quant
        while tmin.dim() > 1 and tmin.shape[0] == 1:
            tmin, scale = tmin[0], scale[0]
    return {"quant": q, "min": tmin, "scale": scale}


def _quant_vid(decoder_sd: dict[str, torch.Tensor], embed: torch.Tensor) -> dict:
    model = {}
    multi = 0
    for i, (k, v) in enumerate(decoder_sd.items()):
        if v.dim() == 1:
            model[k] = _quantise(v, 8, None if i % 4 == 1 else (0,), fp16=i % 2 == 0)
            continue
        # cycle through per-output, per-input, per-row and per-column min/scale, leading-dim
        # dropping, and per-tensor python scalars
        choice = multi % 5
        multi += 1
        if choice == 0:
            model[k] = _quantise(v, 8, tuple(range(1, v.dim())))  # [O, 1, 1, 1]
        elif choice == 1:
            model[k] = _quantise(v, 8, (0, 2, 3))  # [1, I, 1, 1]
        elif choice == 2:
            model[k] = _quantise(v, 8, (0, 1, 2), keep=False)  # [k] (last axis only)
        elif choice == 3:
            model[k] = _quantise(v, 8, (0, 1, 3), keep=False)  # [k, 1]
        else:
            model[k] = _quantise(v, 8, None)
    return {"model": model, "embed": _quantise(embed, 6, (1, 2, 3))}


def _expected(entry) -> torch.Tensor:
    q = entry["quant"].double()
    tmin = torch.as_tensor(entry["min"], dtype=torch.float32).double()
    scale = torch.as_tensor(entry["scale"], dtype=torch.float32).double()
    return tmin + scale * q


def test_quant_vid_dequantises_any_broadcast_shape(tmp_path):
    cfg = tiny_config(strides=(2, 2, 2))  # kernels 1, 3, 5: five multi-dim tensors
    dec = HNeRVDecoder(cfg)
    sd = golden.fill_state_dict(dec)
    embed = torch.randn(7, *cfg.embed_shape, generator=torch.Generator().manual_seed(0))
    obj = _quant_vid(sd, embed)
    shapes = {tuple(torch.as_tensor(e["min"]).shape) for e in obj["model"].values()}
    # python scalars, [1], [O, 1, 1, 1], [1, I, 1, 1], [k] and [k, 1]
    assert {(), (1,), (16, 1, 1, 1), (3,), (5, 1)} <= shapes and len(shapes) == 6
    path = tmp_path / "quant_vid.pth"
    torch.save(obj, path)

    qv = load_quant_vid(path, cfg)
    assert qv.quantised and qv.frames == 7
    assert qv.file_bytes == path.stat().st_size
    assert (qv.weight_bits, qv.embed_bits) == (8, 6)
    assert qv.embedding_values == 7 * cfg.embed_values
    got = qv.decoder.state_dict()
    for k, entry in obj["model"].items():
        want = _expected(entry)
        assert torch.allclose(got[k].double(), want, rtol=1e-6, atol=1e-7), k
        # and the quantisation is faithful to the original weights
        step = float(torch.as_tensor(entry["scale"], dtype=torch.float32).max())
        assert float((got[k] - sd[k]).abs().max()) <= 0.51 * step + 1e-3, k
    assert torch.allclose(qv.embeddings.double(), _expected(obj["embed"]), atol=1e-6)
    assert float((qv.embeddings - embed).abs().max()) < 0.1


def test_quant_vid_with_exact_values_reproduces_decoder_golden(tmp_path):
    gold = golden.load_golden(DECODER)
    cfg = bunny_1p5m_config()
    sd = golden.fill_state_dict(HNeRVDecoder(cfg))
    emb = golden.golden_input_for(gold)
    # values stored exactly: min 0, scale 1 (scalars and broadcast tensors), plain tensors
    model = {}
    for i, (k, v) in enumerate(sd.items()):
        if i % 3 == 0:
            model[k] = v.clone()
        elif i % 3 == 1:
            model[k] = {"quant": v.clone(), "min": 0.0, "scale": 1.0}
        else:
            ones = torch.ones([v.shape[0]] + [1] * (v.dim() - 1), dtype=torch.float16)
            model[k] = {"quant": v.clone(), "min": ones * 0, "scale": ones}
    path = tmp_path / "quant_vid.pth"
    torch.save({"model": model, "embed": {"quant": emb, "min": 0.0, "scale": 1.0}}, path)
    qv = load_quant_vid(path)  # default: the bunny configuration
    for k, v in qv.decoder.state_dict().items():
        assert torch.equal(v, sd[k]), k
    with torch.no_grad():
        frame = qv.decoder(qv.embeddings)
    failures = golden.compare_outputs({"frame": frame}, gold)
    assert failures == [], "\n".join(failures)


def test_quant_vid_errors(tmp_path):
    cfg = tiny_config()
    sd = golden.fill_state_dict(HNeRVDecoder(cfg))
    emb = torch.zeros(2, *cfg.embed_shape)
    with pytest.raises(CheckpointError, match="do not broadcast"):
        dequantize(
            {"quant": torch.zeros(4, 3, dtype=torch.uint8), "min": torch.zeros(4), "scale": 1.0},
            "w",
        )
    with pytest.raises(CheckpointError, match="lacks scale"):
        dequantize({"quant": torch.zeros(3), "min": 0.0}, "w")

    missing = dict(sd)
    missing.pop("head_layer.bias")
    torch.save({"model": missing, "embed": emb}, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match=r"1 missing keys: head_layer\.bias"):
        load_quant_vid(tmp_path / "a.pth", cfg)
    torch.save({"model": sd, "embed": torch.zeros(2, 5, 4, 6)}, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=r"embeddings have shape \[2, 5, 4, 6\]"):
        load_quant_vid(tmp_path / "b.pth", cfg)
    torch.save({"state_dict": sd}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="not a quant_vid file"):
        load_quant_vid(tmp_path / "c.pth", cfg)
    # a pickled object is refused by weights_only loading
    (tmp_path / "d.pth").write_bytes(pickle.dumps(Engine, protocol=2))
    with pytest.raises(CheckpointError, match="cannot read checkpoint d.pth"):
        load_quant_vid(tmp_path / "d.pth", cfg)


# --------------------------------------------------------------------------------------
# (e) compression export
# --------------------------------------------------------------------------------------
def test_export_compression_runs_in_engine(tmp_path):
    cfg = tiny_config()
    model = HNeRV(cfg)
    model.load_state_dict(golden.fill_state_dict(model))
    model.eval()
    frames = torch.rand(6, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        recon, emb = model(frames)
    info = {
        "name": "tiny",
        "crop": [4, 0, 32, 48],
        "source_size": [40, 48],
        "fps": 30.0,
        "bits": 9600,
        "representation": {"weights_bits": 8, "embedding_bits": 6, "file": "tiny.hnerv"},
        "source": {"training_data": "random frames", "demo": True},
    }
    model.train()
    res = export_compression(model, emb, info, tmp_path / "tiny.onnx")
    assert model.training  # the caller's model is left as it was
    assert res.max_abs_diff <= EXPORT_ATOL
    assert res.checked_frames == (0, 1, 3, 5)

    proto = onnx.load(str(res.path))
    assert proto.ir_version <= 10
    inp = proto.graph.input[0]
    assert inp.name == "frame_index" and inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1]
    assert "Gather" in {n.op_type for n in proto.graph.node}

    engine = Engine(res.path, providers="cpu", threads=1)
    card = engine.card
    assert card.task == "compression" and card.name == "tiny"
    assert card.output["frames"] == 6 and card.output["size"] == [32, 48]
    assert card.output["crop"] == [4, 0, 32, 48] and card.output["source_size"] == [40, 48]
    assert card.output["bits"] == 9600
    assert card.output["bpp"] == pytest.approx(9600 / (6 * 32 * 48))
    assert card.source["architecture"] == "HNeRV" and card.is_demo
    assert card.input.scale == pytest.approx(1 / 255) and card.input.mean == (0.0, 0.0, 0.0)
    assert [o.name for o in engine.outputs] == ["frame"]
    for i in range(6):
        (got,) = engine.run({"frame_index": np.array([i], dtype=np.int64)})
        assert got.shape == (1, 3, 32, 48) and got.dtype == np.float32
        assert np.max(np.abs(got - recon[i : i + 1].numpy())) <= EXPORT_ATOL
    # frames differ from each other: the index really selects the embedding
    f0 = engine.run({"frame_index": np.array([0], dtype=np.int64)})[0]
    f5 = engine.run({"frame_index": np.array([5], dtype=np.int64)})[0]
    assert np.mean(np.abs(f0 - f5)) > 1e-3

    with pytest.raises(ValueError, match="embeddings must be"):
        export_compression(model, emb[:, :2], info, tmp_path / "bad.onnx")


def _card(path) -> ModelCard:
    md = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return ModelCard.from_metadata(md)


def test_export_cli_quant_vid_tiny(tmp_path, capsys):
    cfg = tiny_config()
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    sd = golden.fill_state_dict(HNeRVDecoder(cfg))
    emb = torch.randn(5, *cfg.embed_shape, generator=torch.Generator().manual_seed(1))
    qpath = tmp_path / "quant_vid.pth"
    torch.save(_quant_vid(sd, emb), qpath)
    out = tmp_path / "m.onnx"
    rc = main(
        [
            "--quant-vid",
            str(qpath),
            "--config",
            str(tmp_path / "cfg.json"),
            "--out",
            str(out),
            "--fps",
            "12",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.out.count("\n") == 1 and "measured on quant_vid.pth" in captured.out
    card = _card(out)
    assert card.output["frames"] == 5 and card.output["size"] == [32, 48]
    assert card.output["crop"] == [0, 0, 32, 48] and card.output["source_size"] == [32, 48]
    assert card.output["bits"] == 8 * qpath.stat().st_size
    assert card.output["fps"] == 12.0
    rep = card.output["representation"]
    assert rep["file"] == "quant_vid.pth" and rep["weights_bits"] == 8
    assert rep["embedding_bits"] == 6 and rep["params"] == cfg.decoder_params()


@pytest.mark.slow
def test_export_cli_quant_vid_bunny(tmp_path, capsys):
    """The bunny route: default configuration, card geometry of the official clip."""
    cfg = bunny_1p5m_config()
    sd = golden.fill_state_dict(HNeRVDecoder(cfg))
    emb = torch.randn(1, *cfg.embed_shape, generator=torch.Generator().manual_seed(2))
    qpath = tmp_path / "quant_vid.pth"
    torch.save(_quant_vid(sd, emb), qpath)
    out = tmp_path / "bunny.onnx"
    rc = main(["--quant-vid", str(qpath), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    card = _card(out)
    assert card.output["crop"] == [40, 0, 640, 1280]
    assert card.output["source_size"] == [720, 1280]
    assert card.output["size"] == [640, 1280] and card.output["frames"] == 1
    assert card.output["clip"] == "bigbuckbunny.mp4" and card.output["fps"] == 25.0
    assert card.output["bits"] == 8 * qpath.stat().st_size
    assert card.output["representation"]["params"] == 1_488_276


def test_centre_crop_matches_official():
    assert centre_crop_box((720, 1280), (640, 1280)) == [40, 0, 640, 1280]
    assert centre_crop_box((144, 176), (128, 160)) == [8, 8, 128, 160]


@pytest.mark.slow
def test_export_cli_checkpoint_encodes_clip(tmp_path, capsys):
    """--checkpoint --clip: the encoder makes the embeddings from the clip's frames, the
    representation is quantised + entropy-coded and the card's bits are that file's."""
    cfg = HNeRVConfig(
        out_size=(144, 176),
        enc_strides=(4, 4),
        dec_strides=(4, 4),
        fc_dim=12,
        enc_dim=8,
        embed_dim=4,
    )
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    model = HNeRV(cfg)
    _training_checkpoint(tmp_path / "ckpt.pth", model)
    out = tmp_path / "carphone.onnx"
    rc = main(
        [
            "--checkpoint",
            str(tmp_path / "ckpt.pth"),
            "--clip",
            "carphone_pristine.mp4",
            "--config",
            str(tmp_path / "cfg.json"),
            "--frames",
            "4",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    hnerv_file = tmp_path / "carphone.hnerv"
    card = _card(out)
    assert card.output["frames"] == 4 and card.output["crop"] == [0, 0, 144, 176]
    assert card.output["fps"] == pytest.approx(30000 / 1001)
    assert card.output["bits"] == 8 * hnerv_file.stat().st_size
    assert card.output["representation"]["file"] == "carphone.hnerv"

    # frame 2 of the ONNX is the (quantised) decode of the encoder's embedding of frame 2
    from loupe_models.exporters.hnerv import encode_clip, read_clip_frames

    loaded, _ = load_training_checkpoint(tmp_path / "ckpt.pth", cfg)
    frames, _, src_hw = read_clip_frames(
        _clip("carphone_pristine.mp4"), [0, 0, 144, 176], (144, 176), 4
    )
    assert src_hw == (144, 176)
    with torch.no_grad():
        ref = loaded.decode(encode_clip(loaded, frames)[2:3]).numpy()
    got = Engine(out, providers="cpu", threads=1).run(
        {"frame_index": np.array([2], dtype=np.int64)}
    )[0]
    assert np.mean(np.abs(got - ref)) < 0.02


def _clip(name):
    from loupe.base.media import clip_path

    return clip_path(name)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--quant-vid", "missing.pth"], "checkpoint not found"),
        (["--checkpoint", "x.pth"], "--checkpoint needs --clip"),
    ],
)
def test_export_cli_errors(tmp_path, capsys, argv, message):
    rc = main([*argv, "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_export_cli_wrong_model(tmp_path, capsys):
    cfg = tiny_config()
    torch.save(
        {
            "model": golden.fill_state_dict(HNeRVDecoder(cfg)),
            "embed": torch.zeros(2, *cfg.embed_shape),
        },
        tmp_path / "q.pth",
    )
    rc = main(["--quant-vid", str(tmp_path / "q.pth"), "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not fit the decoder of HNeRV 640x1280" in err
    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04 truncated")
    rc = main(["--quant-vid", str(tmp_path / "broken.pth"), "--out", str(tmp_path / "x.onnx")])
    assert rc == 2 and "cannot read checkpoint broken.pth" in capsys.readouterr().err
