"""M-SFANet / M-SegNet: official layout, golden outputs, scatter unpooling, checkpoint loading
and ONNX export with a density card."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from loupe.inference.card import IMAGENET_MEAN, IMAGENET_STD, ModelCard
from loupe_models import golden
from loupe_models.checkpoint import CheckpointError
from loupe_models.exporters.density import (
    VERIFY_ATOL,
    VERIFY_RTOL,
    density_card,
    export_density,
    main,
    verify_density_onnx,
)
from loupe_models.exporters.onnx import SENSITIVITY_STEP, card_sample, compare_outputs, float64_copy
from loupe_models.nets.density import (
    ContextualModule,
    MSegNet,
    MSFANet,
    build_density_model,
    load_density_checkpoint,
    max_unpool2d_scatter,
    unwrap_density_checkpoint,
)

MODELS = [
    pytest.param("m-sfanet", "shanghaitech", "m_sfanet_shanghaitech", id="m-sfanet-sht"),
    pytest.param("m-sfanet", "ucf-qnrf", "m_sfanet_ucf_qnrf", id="m-sfanet-qnrf"),
    pytest.param("m-segnet", "shanghaitech", "m_segnet_shanghaitech", id="m-segnet-sht"),
    pytest.param("m-segnet", "ucf-qnrf", "m_segnet_ucf_qnrf", id="m-segnet-qnrf"),
]


TORCH_THREADS = 4  # at most (tests/models/conftest.py sets and restores torch's threads)


def _empty_state_dict(arch: str, variant: str) -> dict[str, torch.Tensor]:
    """Uninitialised tensors with the model's names and shapes (cheap, for key checks)."""
    with torch.device("meta"):
        sd = build_density_model(arch, variant).state_dict()
    return {k: torch.empty(tuple(v.shape), dtype=v.dtype) for k, v in sd.items()}


def _ort_session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _close_enough(model: torch.nn.Module, x: torch.Tensor, got: list[np.ndarray], label: str
                  ) -> None:
    """ONNX Runtime's outputs for ``x`` agree with the float64 model within the exporter's rule
    (its tolerance plus the model's own float32 sensitivity at ``x``: CPU-independent)."""
    check = compare_outputs(model, x, got, atol=VERIFY_ATOL, rtol=VERIFY_RTOL)
    assert check.ok, f"{label}: {check.summary()}"


# --------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("arch", "variant", "name"), MODELS)
def test_state_dict_layout_matches_official(arch, variant, name):
    ref = golden.load_reference(name)
    model = build_density_model(arch, variant)
    sd = model.state_dict()
    assert list(sd) == list(ref["state_dict"])  # names and order
    assert {k: list(v.shape) for k, v in sd.items()} == ref["state_dict"]
    assert golden.check_layout(sd, ref) == []
    assert sum(p.numel() for p in model.parameters()) == ref["total_params"]
    summary = ref["state_dict_summary"]
    assert len(sd) == summary["entries"]
    assert len(list(model.parameters())) == summary["parameter_entries"]
    assert len(list(model.buffers())) == summary["buffer_entries"]
    if variant == "shanghaitech":
        assert "conv_out.bn.running_var" in sd  # built although unused


def test_classes_and_bad_arguments():
    assert isinstance(build_density_model("m-sfanet", "ucf-qnrf"), MSFANet)
    assert isinstance(build_density_model("M_SegNet", "UCF_QNRF"), MSegNet)
    with pytest.raises(ValueError, match="unknown variant"):
        MSFANet("jhu-crowd")
    with pytest.raises(ValueError, match="unknown architecture"):
        build_density_model("csrnet", "shanghaitech")


def test_forward_shapes_and_size_rules():
    torch.manual_seed(0)
    with torch.no_grad():
        seg = MSegNet("shanghaitech").eval()
        d, a = seg(torch.rand(1, 3, 50, 70))  # any size, like the official model
        assert d.shape == a.shape == (1, 1, 25, 35)
        assert bool(((a > 0) & (a < 1)).all())  # sigmoid attention
        qnrf = MSegNet("ucf-qnrf").eval()
        out = qnrf(torch.rand(2, 3, 32, 48))
        assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 16, 24)
        assert bool((out >= 0).all())  # abs
        with pytest.raises(ValueError, match="multiples of 16"):
            qnrf(torch.rand(1, 3, 40, 48))
        sfa = MSFANet("shanghaitech").eval()  # shapes at 384x384: test_golden_outputs
        with pytest.raises(ValueError, match="multiples of 16, got 520x520"):
            sfa(torch.rand(1, 3, 520, 520))


# --------------------------------------------------------------------------------------
# golden outputs
# --------------------------------------------------------------------------------------
def _golden_run(arch: str, variant: str, name: str, change=None):
    """(outputs, golden, spread or None) of the filled model at the golden input; ``change``
    edits the filled state dict first (a deliberately wrong weight). M-SegNet gets the
    model's own spread at that input (``golden.output_spread``): its max-unpooling sits on
    float32 near-ties there (float32 vs float64 moves the map by 2.5e-2, perturbed inputs by
    1.1e-1, peak 0.448), which rounding on another CPU (AVX2 / AVX-512, FMA, threads) may flip
    the other way; M-SFANet has no argmax-driven step (a max is continuous in its inputs), so
    its float32 error stays near 1e-6 relative, far inside the golden 1e-4."""
    gold = golden.load_golden(name)
    model = build_density_model(arch, variant)
    sd = golden.fill_state_dict(model)
    assert golden.check_fill(sd, gold["fill_check"]) == []
    if change is not None:
        change(sd)
    model.load_state_dict(sd, strict=True)
    model.eval()
    x = golden.golden_input_for(gold)
    assert golden.check_input(x, gold["input"]) == []
    with torch.no_grad():
        out = model(x)
    if variant == "shanghaitech":
        assert isinstance(out, tuple) and len(out) == 2
        outputs = {"density": out[0], "attention": out[1]}
    else:
        assert isinstance(out, torch.Tensor)
        outputs = {"density": out}
    assert set(outputs) == set(gold["outputs"])
    spread = golden.output_spread(model, x, list(gold["outputs"])) if arch == "m-segnet" else None
    return outputs, gold, spread


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "variant", "name"), MODELS)
def test_golden_outputs(arch, variant, name):
    outputs, gold, spread = _golden_run(arch, variant, name)
    failures = golden.compare_outputs(outputs, gold, spread)
    assert failures == [], "\n".join(failures)


def _scale(key: str, factor: float):
    def change(sd):
        sd[key] = sd[key] * factor
    return change


def _swap_first_two_output_channels(key: str):
    def change(sd):
        sd[key] = sd[key][[1, 0, *range(2, sd[key].shape[0])]].clone()
    return change


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["ucf-qnrf", "shanghaitech"])
@pytest.mark.parametrize("change", [
    pytest.param(_scale("conv_out.conv.weight", 1.01), id="output-weight-x1.01"),
    pytest.param(_scale("vgg.conv1_1.conv.weight", 0.98), id="first-weight-x0.98"),
    pytest.param(_swap_first_two_output_channels("vgg.conv1_1.conv.weight"), id="swapped-filters"),
])
def test_golden_with_the_models_own_spread_still_refuses_a_wrong_weight(variant, change):
    """The spread widens only the statistics and samples that sit on a near-tie; the mean,
    std, sum and the smooth samples stay tight, so a weight 1-2 % off (mean/std) or two
    swapped filters (11 of 32 samples) still fail the golden check (the spread is measured on the wrong model itself, as a user's
    run would)."""
    outputs, gold, spread = _golden_run("m-segnet", variant, f"m_segnet_{variant.replace('-', '_')}",
                                        change)
    assert spread is not None
    failures = golden.compare_outputs(outputs, gold, spread)
    assert failures, "a wrong weight passed the golden check"


# --------------------------------------------------------------------------------------
# scatter unpooling and the context module
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 8, 12), (1, 5, 7, 9), (3, 4, 16, 2), (1, 1, 3, 3)])
@pytest.mark.parametrize("ties", [False, True], ids=["ties-free", "ties"])
def test_scatter_unpool_equals_max_unpool2d(shape, ties):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g)
    if ties:
        x = torch.randint(-2, 3, shape, generator=g).float()
    pooled, idx = F.max_pool2d(x, 2, 2, return_indices=True)
    values = torch.randn(pooled.shape, generator=g)  # decoder features, not the pooled maxima
    want = F.max_unpool2d(values, idx, 2, 2, 0, output_size=x.shape)
    got = max_unpool2d_scatter(values, idx, x.shape)
    assert got.shape == want.shape == x.shape
    assert torch.equal(got, want)


def test_scatter_unpool_exports_with_dynamic_size():
    class Net(torch.nn.Module):
        def forward(self, x):
            p, i = F.max_pool2d(x, 2, 2, return_indices=True)
            return max_unpool2d_scatter(p * 2.0 - 1.0, i, x.shape)

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Net(),
            (torch.rand(1, 2, 8, 8),),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}},
        )
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    assert "ScatterElements" in {
        n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node
    }
    for shape in [(1, 2, 8, 8), (3, 2, 10, 14), (1, 2, 7, 5)]:
        x = torch.randn(*shape)
        got = sess.run(None, {"x": x.numpy()})[0]
        p, i = F.max_pool2d(x, 2, 2, return_indices=True)
        want = F.max_unpool2d(p * 2.0 - 1.0, i, 2, 2, 0, output_size=x.shape).numpy()
        np.testing.assert_array_equal(got, want)


def _official_can(can: ContextualModule, feats: torch.Tensor) -> torch.Tensor:
    """The official context-module formula (sigmoid weights, weighted mean)."""
    h, w = feats.shape[2:]
    ms = [
        F.interpolate(s(feats), size=(h, w), mode="bilinear", align_corners=False)
        for s in can.scales
    ]
    ws = [torch.sigmoid(can.weight_net(feats - m)) for m in ms]
    fused = (ms[0] * ws[0] + ms[1] * ws[1] + ms[2] * ws[2] + ms[3] * ws[3]) / (
        ws[0] + ws[1] + ws[2] + ws[3]
    )
    return F.relu(can.bottleneck(torch.cat([fused, feats], 1)))


def test_context_module_matches_official_formula_and_onnx():
    """The softmax-of-log-sigmoid form equals the official sigmoid-weighted mean, and stays
    right in ONNX Runtime when every weight is tiny (ORT's Sigmoid returns 0 below -18)."""
    torch.manual_seed(0)
    can = ContextualModule(8, 8).eval()
    feats = torch.rand(2, 8, 12, 18) * 3
    with torch.no_grad():
        ref64 = _official_can(can.double(), feats.double())
        can.float()
        torch.testing.assert_close(can(feats).double(), ref64, rtol=1e-5, atol=1e-6)
        # very negative weight logits: official float32 sigmoids underflow to 0 -> 0/0
        can.weight_net.bias.fill_(-120.0)
        ref64 = _official_can(can.double(), feats.double())
        can.float()
        assert torch.isnan(_official_can(can, feats)).any()
        got = can(feats)
        torch.testing.assert_close(got.double(), ref64, rtol=1e-4, atol=1e-5)
        can.weight_net.bias.fill_(-25.0)
        ref = can(feats).numpy()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(can, (feats,), buf, dynamo=False, opset_version=17)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: feats.numpy()})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------
def test_unwrap_layouts_and_errors():
    sht = _empty_state_dict("m-segnet", "shanghaitech")
    # ShanghaiTech file: {'epoch', 'model', 'optimizer', 'mae', 'mse'}
    wrapped = {"epoch": 3, "model": sht, "optimizer": {"state": {}}, "mae": 61.2, "mse": 99.0}
    sd = unwrap_density_checkpoint(wrapped, "m-segnet", "shanghaitech")
    assert list(sd) == list(sht)
    qnrf = _empty_state_dict("m-segnet", "ucf-qnrf")
    assert list(unwrap_density_checkpoint(qnrf, "m-segnet", "ucf-qnrf")) == list(qnrf)

    with pytest.raises(
        CheckpointError, match=r"fits M-SegNet\* \(UCF-QNRF\): use m-segnet --variant ucf-qnrf"
    ):
        unwrap_density_checkpoint(qnrf, "m-segnet", "shanghaitech")
    with pytest.raises(CheckpointError, match=r"fits M-SegNet \(ShanghaiTech\)"):
        unwrap_density_checkpoint(wrapped, "m-sfanet", "shanghaitech")

    broken = dict(sht)
    del broken["conv_out.bn.running_var"]
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 missing keys: conv_out\.bn\.running_var") as info:
        unwrap_density_checkpoint({"model": broken}, "m-segnet", "shanghaitech")
    assert "1 unexpected keys: extra.weight" in str(info.value)
    assert "M-SegNet (ShanghaiTech)" in str(info.value)

    bad_shape = dict(qnrf)
    bad_shape["conv_out.conv.bias"] = torch.zeros(2)
    with pytest.raises(
        CheckpointError, match=r"1 shape mismatches: conv_out\.conv\.bias \[2\] != \[1\]"
    ):
        unwrap_density_checkpoint(bad_shape, "m-segnet", "ucf-qnrf")
    with pytest.raises(CheckpointError, match="not a tensor"):
        unwrap_density_checkpoint({"model": {"a": 1}}, "m-segnet", "shanghaitech")
    with pytest.raises(CheckpointError, match="expected a dict"):
        unwrap_density_checkpoint([1, 2], "m-segnet", "shanghaitech")


def test_load_checkpoint_file_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_density_checkpoint(tmp_path / "none.pth", "m-sfanet", "ucf-qnrf")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cannot read checkpoint bad.pth"):
        load_density_checkpoint(bad, "m-sfanet", "ucf-qnrf")
    small = tmp_path / "small.pth"
    torch.save({"model": {"vgg.conv1_1.conv.weight": torch.zeros(64, 3, 3, 3)}}, small)
    with pytest.raises(CheckpointError, match=r"246 missing keys"):
        load_density_checkpoint(small, "m-sfanet", "shanghaitech")


# --------------------------------------------------------------------------------------
# cards and CLI arguments
# --------------------------------------------------------------------------------------
def test_density_cards():
    card = density_card("m-sfanet", "shanghaitech", checkpoint_name="ckpt_A.pth")
    assert card.task == "density" and card.name == "M-SFANet (ShanghaiTech)"
    assert card.input.fixed_size == (384, 576)
    assert card.input.color == "RGB" and card.input.scale == pytest.approx(1 / 255)
    assert card.input.mean == IMAGENET_MEAN and card.input.std == IMAGENET_STD
    assert card.output == {
        "stride": 2,
        "count_scale": 1.0,
        "kind": "density",
        "outputs": ["density", "attention"],
    }
    assert card.source["demo"] is False and card.source["checkpoint"] == "ckpt_A.pth"
    assert "ShanghaiTech" in card.source["training_data"]
    assert ModelCard.from_metadata(card.to_metadata()) == card

    card = density_card("m-sfanet", "ucf-qnrf", fixed_size=(480, 720))
    assert card.input.fixed_size == (480, 720) and card.output["outputs"] == ["density"]
    with pytest.raises(ValueError, match="multiples of 48"):
        density_card("m-sfanet", "ucf-qnrf", fixed_size=(512, 512))

    card = density_card("m-segnet", "ucf-qnrf")
    assert card.input.fixed_size is None and card.input.size_multiple == 16
    assert card.name == "M-SegNet* (UCF-QNRF)" and card.source["training_data"].startswith(
        "UCF-QNRF"
    )
    with pytest.raises(ValueError, match="dynamic"):
        density_card("m-segnet", "ucf-qnrf", fixed_size=(384, 576))


def test_cli_argument_errors(tmp_path, capsys):
    out = tmp_path / "x.onnx"
    ckpt = tmp_path / "missing.pth"
    rc = main(
        [
            "m-sfanet",
            "--variant",
            "shanghaitech",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--size",
            "512x512",
        ]
    )
    assert rc == 2 and "multiples of 48" in capsys.readouterr().err
    rc = main(["m-segnet", "--variant", "ucf-qnrf", "--checkpoint", str(ckpt), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint not found" in err and "Traceback" not in err
    assert main(["m-segnet", "--variant", "jhu", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert (
        main(
            [
                "m-segnet",
                "--variant",
                "ucf-qnrf",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--size",
                "big",
            ]
        )
        == 2
    )
    capsys.readouterr()
    assert not out.exists()


# --------------------------------------------------------------------------------------
# round trip: official file -> load -> ONNX with card -> onnxruntime
# --------------------------------------------------------------------------------------
def _card_of(path) -> ModelCard:
    proto = onnx.load(str(path), load_external_data=False)
    assert proto.ir_version <= 10
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    return ModelCard.from_metadata({p.key: p.value for p in proto.metadata_props})


@pytest.mark.slow
def test_round_trip_m_sfanet_shanghaitech(tmp_path, capsys):
    model = MSFANet("shanghaitech")
    filled = golden.fill_state_dict(model)
    ckpt = tmp_path / "checkpoint_best_MSFANet_A.pth"
    torch.save(
        {
            "epoch": 412,
            "model": filled,
            "optimizer": {"state": {}, "param_groups": []},
            "mae": 59.7,
            "mse": 95.7,
        },
        ckpt,
    )
    out = tmp_path / "msfanet.onnx"

    rc = main(
        [
            "m-sfanet",
            "--variant",
            "shanghaitech",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--size",
            "96x144",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    line = captured.out.strip()
    assert "M-SFANet (ShanghaiTech)" in line and "fixed 96x144" in line and "max abs diff" in line

    card = _card_of(out)
    assert card == density_card(
        "m-sfanet", "shanghaitech", fixed_size=(96, 144), checkpoint_name=ckpt.name
    )
    assert card.input.fixed_size == (96, 144)

    sess = _ort_session(out)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert sess.get_inputs()[0].shape[1:] == [3, 96, 144]  # fixed H, W; batch dynamic
    assert [o.name for o in sess.get_outputs()] == ["density", "attention"]

    loaded = load_density_checkpoint(ckpt, "m-sfanet", "shanghaitech")
    model.load_state_dict(loaded, strict=True)
    model.eval()
    g = torch.Generator().manual_seed(3)
    x = (
        torch.rand(2, 3, 96, 144, generator=g) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        density64, _ = float64_copy(model)(x.double())
    got = sess.run(None, {"image": x.numpy()})
    _close_enough(model, x, got, "density, attention")
    assert got[0].shape == (2, 1, 48, 72)
    # the count (the map's sum) against the float64 model: M-SFANet has no max-unpooling, so
    # only float32 rounding (~1e-6 relative) separates them
    assert abs(float(got[0].sum()) - float(density64.sum())) <= 1e-4 * float(density64.abs().sum())


@pytest.mark.slow
def test_round_trip_m_segnet_ucf_qnrf_dynamic(tmp_path, capsys):
    model = MSegNet("ucf-qnrf")
    filled = golden.fill_state_dict(model)
    ckpt = tmp_path / "best_M-SegNet_UCF_QNRF.pth"
    torch.save(filled, ckpt)  # UCF-QNRF files are the state dict itself
    out = tmp_path / "msegnet.onnx"

    rc = main(
        [
            "m-segnet",
            "--variant",
            "ucf-qnrf",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--size",
            "64x96",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "at 1x3x64x96" in captured.out and "at 1x3x96x160" in captured.out

    card = _card_of(out)
    assert card == density_card("m-segnet", "ucf-qnrf", checkpoint_name=ckpt.name)
    assert card.output["outputs"] == ["density"]

    sess = _ort_session(out)
    assert [o.name for o in sess.get_outputs()] == ["density"]
    model.load_state_dict(load_density_checkpoint(ckpt, "m-segnet", "ucf-qnrf"), strict=True)
    model.eval()
    g = torch.Generator().manual_seed(5)
    for shape in [(1, 3, 64, 96), (2, 3, 80, 48)]:
        x = torch.rand(*shape, generator=g) * 4 - 2
        got = sess.run(None, {"image": x.numpy()})[0]
        assert got.shape == (shape[0], 1, shape[2] // 2, shape[3] // 2)
        assert float(got.min()) >= 0.0
        _close_enough(model, x, [got], f"density {shape}")


def test_export_density_rejects_mismatched_sample(tmp_path):
    card = density_card("m-sfanet", "ucf-qnrf", fixed_size=(96, 96))
    with pytest.raises(RuntimeError, match="differs from the card's fixed size"):
        export_density(MSFANet("ucf-qnrf"), tmp_path / "x.onnx", card, sample_hw=(48, 48))


# --------------------------------------------------------------------------------------
# the post-export check: near-ties of max-unpooling pass on every CPU, real defects do not
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segnet_qnrf(tmp_path_factory):
    model = MSegNet("ucf-qnrf")
    model.load_state_dict(golden.fill_state_dict(model), strict=True)
    model.eval()
    card = density_card("m-segnet", "ucf-qnrf")
    path = export_density(model, tmp_path_factory.mktemp("segnet") / "q.onnx", card,
                          sample_hw=(64, 96))
    return model, card, path


#: The exporter's second check input for ``--size 64x96``: the one that failed on AMD EPYC.
TIE_HW = (96, 160)


@pytest.mark.slow
def test_check_input_sits_on_a_max_unpool_near_tie_and_the_other_side_passes(segnet_qnrf):
    """The AMD failure, reproduced without an AMD CPU: at the exporter's check input the model
    itself jumps by percents of its peak when rounding flips which cell of a pooling window
    wins. A result from the other side of such a tie (what ONNX Runtime gave on AVX2) passes."""
    model, card, path = segnet_qnrf
    x = card_sample(TIE_HW, card, 0)
    m64 = float64_copy(model)
    x64 = x.double()
    n = torch.randn(x64.shape, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    step = 0.1 * SENSITIVITY_STEP * float(x64.pow(2).mean().sqrt())  # finer than the check's
    with torch.no_grad():
        ref = m64(x64).numpy()
        others = [m64(x64 + s * step * n).numpy() for s in (1, -1)]
    jump = max(float(np.abs(o - ref).max()) for o in others)
    smooth = VERIFY_ATOL + VERIFY_RTOL * float(ref.max())
    assert jump > 10 * smooth  # a near-tie: far beyond float32 noise of a smooth map
    # the count hardly moves
    assert all(abs(o.sum() - ref.sum()) <= 1e-4 * ref.sum() for o in others)
    for other in others:
        check = compare_outputs(model, x, [other.astype(np.float32)], ["density"],
                                atol=VERIFY_ATOL, rtol=VERIFY_RTOL)
        assert check.ok, check.summary()
        assert check.outputs[0].sensitivity >= 0.5 * jump
    assert verify_density_onnx(model, path, TIE_HW, card).ok


def _tampered(path, tmp_path, change) -> str:
    proto = onnx.load(str(path))
    change(proto)
    out = tmp_path / "tampered.onnx"
    onnx.save(proto, str(out))
    return str(out)


def _scale_initializer(name: str, factor: float):
    def change(proto):
        init = next(i for i in proto.graph.initializer if i.name == name)
        init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * factor, name))
    return change


def _resize_nearest(proto):
    node = next(n for n in proto.graph.node if n.op_type == "Resize")
    mode = next(a for a in node.attribute if a.name == "mode")
    assert mode.s == b"linear"
    mode.s = b"nearest"


def _swap_first_concat_inputs(proto):
    node = next(n for n in proto.graph.node if n.op_type == "Concat"
                and any(a.name == "axis" and a.i == 1 for a in n.attribute))
    inputs = list(node.input)
    inputs[0], inputs[1] = inputs[1], inputs[0]
    del node.input[:]
    node.input.extend(inputs)


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    pytest.param(_scale_initializer("model.conv_out.conv.weight", 1.01), id="output-weight-x1.01"),
    pytest.param(_scale_initializer("model.vgg.conv1_1.conv.weight", 0.9), id="first-weight-x0.9"),
    pytest.param(_resize_nearest, id="resize-nearest"),
    pytest.param(_swap_first_concat_inputs, id="concat-order"),
])
def test_check_refuses_a_defective_export_even_at_the_near_tie(segnet_qnrf, tmp_path, change):
    """The tolerance widened by the model's own sensitivity still refuses what an export can
    break: a weight off by 1 %, a wrong resize mode, a wrong concat order."""
    model, card, path = segnet_qnrf
    bad = _tampered(path, tmp_path, change)
    for hw in [(64, 96), TIE_HW]:
        check = verify_density_onnx(model, bad, hw, card)
        assert not check.ok, check.summary()


@pytest.mark.slow
def test_cli_refuses_an_export_that_differs_from_the_checkpoint(tmp_path, capsys, monkeypatch):
    """End to end: the exporter checks the file against the checkpoint's model; a graph whose
    weight differs (here: the exporter is handed one changed weight) exits 1."""
    import loupe_models.exporters.density as ed

    model = MSegNet("ucf-qnrf")
    sd = golden.fill_state_dict(model)
    ckpt = tmp_path / "q.pth"
    torch.save(sd, ckpt)
    real_export = ed.export_density

    def export_with_one_changed_weight(net, out_path, card, sample_hw=None, opset=17):
        bad = MSegNet("ucf-qnrf")
        bad.load_state_dict(net.state_dict())
        with torch.no_grad():
            bad.conv_out.conv.bias.add_(0.05)
        return real_export(bad, out_path, card, sample_hw=sample_hw, opset=opset)

    monkeypatch.setattr(ed, "export_density", export_with_one_changed_weight)
    out = tmp_path / "q.onnx"
    rc = main(["m-segnet", "--variant", "ucf-qnrf", "--checkpoint", str(ckpt), "--out", str(out),
               "--size", "64x96"])
    err = capsys.readouterr().err
    assert rc == 1 and "should not be used" in err and "Traceback" not in err
