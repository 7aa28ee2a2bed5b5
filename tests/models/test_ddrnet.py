"""DDRNet-23-slim: official layout, golden outputs, checkpoint loading and ONNX export."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from loupe.inference.card import CITYSCAPES_LABELS, CITYSCAPES_PALETTE, ModelCard
from loupe_models import golden
from loupe_models.checkpoint import CheckpointError, load_ddrnet_checkpoint
from loupe_models.exporters.onnx import (
    _FirstOutput,
    compare_outputs,
    ddrnet23_slim_card,
    export_segmentation,
    float64_copy,
    main,
)
from loupe_models.nets.ddrnet import DualResNet, ddrnet23_slim

VARIANTS = [
    pytest.param(False, "ddrnet23_slim_cityscapes", id="main"),
    pytest.param(True, "ddrnet23_slim_cityscapes_augment", id="augment"),
]


TORCH_THREADS = 4  # at most (tests/models/conftest.py sets and restores torch's threads)


def _official_checkpoint(path, *, with_aux: bool = True, outer: bool = True) -> dict:
    """A fake official file: the rule-filled augment model in HRNet FullModel format."""
    sd = golden.fill_state_dict(ddrnet23_slim(augment=True))
    if not with_aux:
        sd = {k: v for k, v in sd.items() if not k.startswith("seghead_extra.")}
    wrapped = {f"model.{k}": v for k, v in sd.items()}
    wrapped["loss.criterion.weight"] = torch.linspace(0.8, 1.1, 19)
    torch.save({"state_dict": wrapped} if outer else wrapped, path)
    return sd


# --------------------------------------------------------------------------------------
# (a) layout
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("augment", "name"), VARIANTS)
def test_state_dict_layout_matches_official(augment, name):
    ref = golden.load_reference(name)
    model = ddrnet23_slim(augment=augment)
    sd = model.state_dict()
    assert list(sd) == list(ref["state_dict"])  # names and order
    assert {k: list(v.shape) for k, v in sd.items()} == ref["state_dict"]
    assert golden.check_layout(sd, ref) == []
    assert sum(p.numel() for p in model.parameters()) == ref["total_params"]
    summary = ref["state_dict_summary"]
    assert len(sd) == summary["entries"]
    assert len(list(model.parameters())) == summary["parameter_entries"]
    assert len(list(model.buffers())) == summary["buffer_entries"]


def test_check_layout_reports_differences():
    ref = golden.load_reference("ddrnet23_slim_cityscapes")
    sd = ddrnet23_slim(augment=True).state_dict()
    failures = golden.check_layout(sd, ref)
    assert any("unexpected 13 keys" in f and "seghead_extra.bn1.weight" in f for f in failures)


@pytest.mark.parametrize(
    ("hw", "out_hw"), [((256, 512), (32, 64)), ((264, 520), (33, 65)), ((128, 128), (16, 16))]
)
def test_forward_shapes(hw, out_hw):
    model = ddrnet23_slim().eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *hw))
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == (1, 19, *out_hw)


def test_narrow_variant_runs():
    model = DualResNet(num_classes=5, planes=16, spp_planes=64, head_planes=32, augment=True)
    model.eval()
    with torch.no_grad():
        main_out, aux = model(torch.rand(2, 3, 128, 192))
    assert tuple(main_out.shape) == (2, 5, 16, 24)
    assert tuple(aux.shape) == (2, 5, 16, 24)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 5_695_987 / 3


# --------------------------------------------------------------------------------------
# (b) golden outputs
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("augment", "name"), VARIANTS)
def test_golden_outputs(augment, name):
    gold = golden.load_golden(name)
    model = ddrnet23_slim(augment=augment)

    sd = golden.fill_state_dict(model)
    assert golden.check_fill(sd, gold["fill_check"]) == []
    model.load_state_dict(sd, strict=True)
    model.eval()

    x = golden.golden_input(gold["input"]["shape"], "0.5+0.5*sin(0.013*j)")
    assert golden.check_input(x, gold["input"]) == []

    with torch.no_grad():
        out = model(x)
    if augment:
        assert isinstance(out, tuple) and len(out) == 2
        outputs = {"logits": out[0], "logits_aux": out[1]}  # official order [main, aux]
    else:
        assert isinstance(out, torch.Tensor)
        outputs = {"logits": out}
    assert set(outputs) == set(gold["outputs"])
    for key, entry in gold["outputs"].items():
        assert "argmax_class_histogram" in entry
        failures = golden.compare_output(outputs[key], entry, key)
        assert failures == [], "\n".join(failures)


def test_run_golden_chain():
    assert golden.run_golden(ddrnet23_slim(), "ddrnet23_slim_cityscapes") == []


def test_compare_output_catches_small_errors():
    gold = golden.load_golden("ddrnet23_slim_cityscapes")
    entry = gold["outputs"]["logits"]
    model = ddrnet23_slim()
    model.load_state_dict(golden.fill_state_dict(model))
    model.eval()
    with torch.no_grad():
        out = model(golden.golden_input_for(gold))
    assert golden.compare_output(out, entry) == []
    # 0.1 % gain error: mean/std/min/max/samples all move past the 1e-4 tolerance
    assert any("std" in f for f in golden.compare_output(out * 1.001, entry))
    # three pixels switched to another class: histogram check fails (2 of 2048 allowed)
    flipped = out.clone()
    for p in range(3):
        flipped[0, 18, 0, p] = 1e3
    assert any("argmax histogram" in f for f in golden.compare_output(flipped, entry))
    assert golden.compare_output(out[:, :3], entry)[0].startswith("output: shape")


def test_fill_and_input_helpers():
    # fill rule lines
    v = golden.fill_values("a.running_var", (4,), k=3)
    assert np.all((v >= 1.0) & (v <= 1.5))
    v = golden.fill_values("conv.weight", (8, 2, 3, 3), k=0)
    assert np.max(np.abs(v)) <= math.sqrt(6 / 18)
    assert v.reshape(-1)[0] == pytest.approx(-math.sqrt(6 / 18))  # h_0 = 0 for k = 0
    v = golden.fill_values("bn.weight", (5,), k=2)
    assert np.all(np.abs(v - 1.0) <= 0.1)
    v = golden.fill_values("quantize_t.embed", (64, 512), k=9)
    assert np.max(np.abs(v)) <= 3 and np.max(np.abs(v)) > 2.9
    assert np.all(golden.fill_values("x.num_batches_tracked", (), k=5, integer=True) == 0)
    # check_fill notices a wrong fill
    gold = golden.load_golden("ddrnet23_slim_cityscapes")
    sd = golden.fill_state_dict(ddrnet23_slim())
    sd["conv1.0.bias"] = sd["conv1.0.bias"] * 2
    assert golden.check_fill(sd, gold["fill_check"])
    # input kinds
    assert golden.golden_input((1, 16, 2, 4), "sin(0.7*j)")[0, 0, 0, 1].item() == pytest.approx(
        math.sin(0.7), rel=1e-6
    )
    s = golden.golden_input((2, 5), "signed").reshape(-1)
    assert s[7].item() == pytest.approx(math.sin(0.013 * 7), rel=1e-6)
    assert golden.input_kind_from_rule(gold["input"]["rule"]) == "0.5+0.5*sin(0.013*j)"
    with pytest.raises(ValueError):
        golden.golden_input((2,), "cos(j)")
    # sample indices as stored in the golden file
    entry = gold["outputs"]["logits"]
    assert golden.sample_indices(math.prod(entry["shape"])) == entry["sample_indices"]


# --------------------------------------------------------------------------------------
# checkpoint unwrapping
# --------------------------------------------------------------------------------------
def test_load_checkpoint_unwraps_fullmodel(tmp_path):
    path = tmp_path / "best_val_smaller.pth"
    filled = _official_checkpoint(path)
    sd = load_ddrnet_checkpoint(path)
    assert list(sd) == list(ddrnet23_slim().state_dict())
    assert torch.equal(sd["final_layer.conv2.bias"], filled["final_layer.conv2.bias"])
    ddrnet23_slim().load_state_dict(sd, strict=True)

    sd_aux = load_ddrnet_checkpoint(path, augment=True)
    ddrnet23_slim(augment=True).load_state_dict(sd_aux, strict=True)

    bare = tmp_path / "bare.pth"
    _official_checkpoint(bare, outer=False)
    assert list(load_ddrnet_checkpoint(bare)) == list(sd)


def test_load_checkpoint_reports_missing_and_unexpected(tmp_path):
    sd = golden.fill_state_dict(ddrnet23_slim())
    del sd["spp.shortcut.2.weight"]
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"1 missing keys: spp\.shortcut\.2\.weight") as info:
        load_ddrnet_checkpoint(path)
    assert "1 unexpected keys: extra.weight" in str(info.value)
    assert isinstance(info.value, CheckpointError)

    no_aux = tmp_path / "no_aux.pth"
    _official_checkpoint(no_aux, with_aux=False)
    with pytest.raises(ValueError, match=r"augment=True.*13 missing keys: seghead_extra"):
        load_ddrnet_checkpoint(no_aux, augment=True)

    bad_shape = golden.fill_state_dict(ddrnet23_slim())
    bad_shape["final_layer.conv2.bias"] = torch.zeros(20)
    torch.save(bad_shape, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"shape mismatches: final_layer\.conv2\.bias"):
        load_ddrnet_checkpoint(tmp_path / "shape.pth")


# --------------------------------------------------------------------------------------
# (c) export CLI
# --------------------------------------------------------------------------------------
def _ort_session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.slow
def test_export_cli_official_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "best_val_smaller.pth"
    _official_checkpoint(ckpt)
    out = tmp_path / "onnx" / "ddrnet23_slim.onnx"

    rc = main(["ddrnet23-slim", "--checkpoint", str(ckpt), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and "max abs diff" in lines[0] and "DDRNet-23-slim" in lines[0]

    proto = onnx.load(str(out))
    assert proto.ir_version <= 10
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    md = {p.key: p.value for p in proto.metadata_props}
    card = ModelCard.from_metadata(md)
    assert card == ddrnet23_slim_card("best_val_smaller.pth")
    assert card.task == "segmentation"
    assert card.name == "DDRNet-23-slim (Cityscapes)"
    assert card.input.color == "RGB" and card.input.size_multiple == 8
    assert card.input.scale == pytest.approx(1 / 255)
    assert card.labels == CITYSCAPES_LABELS and card.palette == CITYSCAPES_PALETTE
    assert card.output == {"stride": 8, "kind": "logits"}
    assert card.source["training_data"] == "Cityscapes (official checkpoint)"
    assert card.source["demo"] is False and not card.is_demo
    assert card.source["checkpoint"] == "best_val_smaller.pth"
    assert json.loads(md["loupe.labels"])[0] == "road"

    model = ddrnet23_slim()
    model.load_state_dict(load_ddrnet_checkpoint(ckpt), strict=True)
    model.eval()
    sess = _ort_session(out)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    g = torch.Generator().manual_seed(1)
    for shape in [(1, 3, 192, 320), (2, 3, 136, 248)]:
        x = torch.rand(*shape, generator=g) * 4 - 2
        got = sess.run(None, {"image": x.numpy()})[0]
        assert got.shape == (shape[0], 19, shape[2] // 8, shape[3] // 8)
        # against the float64 model, within the exporter's rule (CPU-independent)
        check = compare_outputs(model, x, [got])
        assert check.ok, f"{shape}: {check.summary()}"
        # the class map may differ only where the two best float64 logits are closer than
        # the accepted difference (a near-tie, decided by float32 rounding on each CPU)
        with torch.no_grad():
            ref = float64_copy(model)(x.double()).numpy()
        top2 = np.sort(ref, axis=1)[:, -2:]
        near_tie = (top2[:, 1] - top2[:, 0]) <= 2 * check.limit
        assert not np.any((got.argmax(1) != ref.argmax(1)) & ~near_tie)


@pytest.mark.slow
def test_export_segmentation_narrow_augment_model(tmp_path):
    """export_segmentation is generic: a narrow aux-head model exports its main head only."""
    model = DualResNet(num_classes=4, planes=16, spp_planes=64, head_planes=32, augment=True)
    model.load_state_dict(golden.fill_state_dict(model))
    model.eval()
    card = ModelCard(task="segmentation", name="narrow", labels=("a", "b", "c", "d"))
    path = export_segmentation(model, tmp_path / "narrow.onnx", card, sample_hw=(128, 128))
    sess = _ort_session(path)
    assert len(sess.get_outputs()) == 1
    x = torch.rand(1, 3, 96, 160)
    got = sess.run(None, {"image": x.numpy()})[0]
    assert got.shape == (1, 4, 12, 20)
    check = compare_outputs(_FirstOutput(model), x, [got])
    assert check.ok, check.summary()
    md = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert ModelCard.from_metadata(md).name == "narrow"


# --------------------------------------------------------------------------------------
# (d) bad checkpoints
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x80\x02this is not a checkpoint" * 10, "cannot read checkpoint broken.pth"),
        (b"", "cannot read checkpoint broken.pth"),
        (b"PK\x03\x04 truncated zip", "cannot read checkpoint broken.pth"),
    ],
    ids=["garbage", "empty", "truncated-zip"],
)
def test_export_cli_corrupt_checkpoint(tmp_path, capsys, content, message):
    ckpt = tmp_path / "broken.pth"
    ckpt.write_bytes(content)
    out = tmp_path / "x.onnx"
    rc = main(["ddrnet23-slim", "--checkpoint", str(ckpt), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 2
    assert message in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


def test_export_cli_wrong_checkpoint_keys(tmp_path, capsys):
    ckpt = tmp_path / "other.pth"
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(2, 2)}}, ckpt)
    rc = main(["ddrnet23-slim", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "does not fit DDRNet-23-slim" in err and "fc.weight" in err
    assert "Traceback" not in err

    no_aux = tmp_path / "no_aux.pth"
    _official_checkpoint(no_aux, with_aux=False)
    rc = main(
        [
            "ddrnet23-slim",
            "--checkpoint",
            str(no_aux),
            "--out",
            str(tmp_path / "y.onnx"),
            "--augment-checkpoint",
        ]
    )
    assert rc == 2
    assert "seghead_extra" in capsys.readouterr().err

    rc = main(["ddrnet23-slim", "--checkpoint", str(tmp_path / "missing.pth"), "--out", "z.onnx"])
    assert rc == 2
    assert "checkpoint not found" in capsys.readouterr().err
