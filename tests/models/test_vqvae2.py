"""VQ-VAE-2: official layout, golden outputs, checkpoint import and codebook ONNX export."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from loupe.inference.card import ModelCard
from loupe.inference.engine import Engine
from loupe_models import golden
from loupe_models.checkpoint import CheckpointError
from loupe_models.exporters.codebook import (
    VQVAE2Codes,
    export_vqvae2,
    main,
    run_codebook_onnx,
    verify_codebook_onnx,
    vqvae2_card,
)
from loupe_models.nets.vqvae2 import VQVAE, load_vqvae2_checkpoint, vqvae2_ffhq

NAME = "vqvae2_ffhq"


TORCH_THREADS = 1  # tests/models/conftest.py sets and restores torch's threads


@pytest.fixture(scope="module")
def filled() -> VQVAE:
    model = vqvae2_ffhq()
    model.load_state_dict(golden.fill_state_dict(model), strict=True)
    return model.eval()


def _all_outputs(model: VQVAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    recon, latent_loss = model(x)
    quant_t, quant_b, _diff, id_t, id_b = model.encode(x)
    return {
        "recon": recon, "latent_loss": latent_loss, "quant_t": quant_t, "quant_b": quant_b,
        "id_t": id_t, "id_b": id_b, "decode_code_recon": model.decode_code(id_t, id_b),
    }


def test_state_dict_layout_matches_official():
    ref = golden.load_reference(NAME)
    model = vqvae2_ffhq()
    sd = model.state_dict()
    assert list(sd) == list(ref["state_dict"])  # names and order, buffers included
    assert {k: list(v.shape) for k, v in sd.items()} == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["total_params"] == 1_388_867
    summary = ref["state_dict_summary"]
    assert len(list(model.parameters())) == summary["parameter_entries"]
    assert len(list(model.buffers())) == summary["buffer_entries"]
    assert list(sd["quantize_t.embed"].shape) == [64, 512]


@pytest.mark.parametrize(("hw", "top", "bottom"),
                         [((128, 192), (16, 24), (32, 48)), ((264, 264), (33, 33), (66, 66))])
def test_code_map_shapes(hw, top, bottom):
    with torch.no_grad():
        _, _, _, id_t, id_b = vqvae2_ffhq().eval().encode(torch.zeros(1, 3, *hw))
    assert tuple(id_t.shape) == (1, *top) and tuple(id_b.shape) == (1, *bottom)
    assert id_t.dtype == torch.int64


def test_golden_outputs(filled):
    gold = golden.load_golden(NAME)
    assert golden.check_fill(golden.fill_state_dict(vqvae2_ffhq()), gold["fill_check"]) == []
    x = golden.golden_input_for(gold)
    assert golden.check_input(x, gold["input"]) == []
    with torch.no_grad():
        outputs = _all_outputs(filled, x)
    assert set(outputs) == set(gold["outputs"])
    failures = golden.compare_outputs(outputs, gold)
    assert failures == [], "\n".join(failures)
    # the code maps are not degenerate: many codes, as the official run
    assert len(torch.unique(outputs["id_b"])) == gold["outputs"]["id_b"]["codes"]["distinct_codes"]


def test_golden_catches_a_wrong_model(filled):
    """A 0.1 % gain error or swapped codebooks fail the golden check."""
    gold = golden.load_golden(NAME)
    x = golden.golden_input_for(gold)
    with torch.no_grad():
        recon, _ = filled(x)
    assert golden.compare_output(recon * 1.001, gold["outputs"]["recon"], "recon")
    swapped = vqvae2_ffhq()
    sd = golden.fill_state_dict(swapped)
    swapped.load_state_dict(sd)
    swapped.eval()
    # swap the top/bottom codebooks: codes change, the golden check must say so
    with torch.no_grad():
        swapped.quantize_t.embed.copy_(sd["quantize_b.embed"])
        _, _, _, id_t, _ = swapped.encode(x)
    assert golden.compare_output(id_t, gold["outputs"]["id_t"], "id_t")


def test_checkpoint_import(tmp_path, filled):
    """The official file is the state dict itself; it loads with weights_only=True."""
    sd = golden.fill_state_dict(vqvae2_ffhq())
    path = tmp_path / "vqvae_560.pt"
    torch.save(sd, path)
    loaded = load_vqvae2_checkpoint(path)
    assert list(loaded) == list(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    model = vqvae2_ffhq()
    model.load_state_dict(loaded, strict=True)
    # a DataParallel save (module.) loads too
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "dp.pt")
    assert list(load_vqvae2_checkpoint(tmp_path / "dp.pt")) == list(sd)


def test_checkpoint_errors(tmp_path):
    sd = golden.fill_state_dict(vqvae2_ffhq())
    del sd["quantize_b.embed_avg"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="1 missing keys: quantize_b.embed_avg"):
        load_vqvae2_checkpoint(tmp_path / "missing.pt")
    sd = golden.fill_state_dict(vqvae2_ffhq())
    sd["quantize_t.embed"] = torch.zeros(64, 256)
    torch.save(sd, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"quantize_t.embed \[64, 256\] != \[64, 512\]"):
        load_vqvae2_checkpoint(tmp_path / "shape.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint junk.pt"):
        load_vqvae2_checkpoint(tmp_path / "junk.pt")


def test_onnx_export_codes_equal_torch(tmp_path, filled):
    out = export_vqvae2(filled, tmp_path / "vqvae2.onnx", vqvae2_card("vqvae_560.pt"))
    proto = onnx.load(str(out))
    assert proto.ir_version <= 10
    assert [o.name for o in proto.graph.output] == ["codes_top", "codes_bottom", "recon"]
    # the golden input: ONNX codes equal torch's encode() and the official code maps
    gold = golden.load_golden(NAME)
    x = golden.golden_input_for(gold)
    got = run_codebook_onnx(out, x.numpy())
    with torch.no_grad():
        _, _, _, id_t, id_b = filled.encode(x)
        dec = filled.decode_code(id_t, id_b)
    assert got["codes_top"].dtype == np.int64
    np.testing.assert_array_equal(got["codes_top"], id_t.numpy())
    np.testing.assert_array_equal(got["codes_bottom"], id_b.numpy())
    assert golden.compare_output(torch.from_numpy(got["codes_bottom"]), gold["outputs"]["id_b"]) == []
    assert golden.compare_output(torch.from_numpy(got["recon"]),
                                 gold["outputs"]["decode_code_recon"]) == []
    assert np.abs(got["recon"] - dec.numpy()).max() < 1e-3
    # another size (dynamic axes), random normalised image
    check = verify_codebook_onnx(VQVAE2Codes(filled), out, vqvae2_card(), hw=(72, 104))
    # ok: codes equal the float64 model's but at near-ties float32 rounding may flip (none
    # at this input: its closest two codes are 8e-6 apart relative to |z|^2, float32 noise
    # ~1e-6), reconstruction within the tolerance plus the decoder's own sensitivity
    assert check.ok, check.summary()
    assert check.code_positions == {"top": 9 * 13, "bottom": 18 * 26}


def test_card_and_engine(tmp_path, filled):
    out = export_vqvae2(filled, tmp_path / "vqvae2.onnx", vqvae2_card("vqvae_560.pt"))
    eng = Engine(out, providers="cpu")
    card = eng.card
    assert card.task == "codebook" and card.origin == "metadata"
    assert card.output["levels"] == [
        {"name": "top", "output": "codes_top", "codebook_size": 512, "stride": 8, "k": 1},
        {"name": "bottom", "output": "codes_bottom", "codebook_size": 512, "stride": 4, "k": 1},
    ]
    assert card.output["reconstruction"] == {"output": "recon", "scale": 0.5, "offset": 0.5}
    assert card.input.mean == (0.5, 0.5, 0.5) and card.input.std == (0.5, 0.5, 0.5)
    assert card.input.size_multiple == 8 and card.input.scale == pytest.approx(1 / 255)
    assert card.source["architecture"] == "VQ-VAE-2" and card.source["demo"] is False
    md = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert ModelCard.from_metadata(md).output == json.loads(md["loupe.output"])


def test_cli(tmp_path, capsys):
    sd = golden.fill_state_dict(vqvae2_ffhq())
    torch.save(sd, tmp_path / "vqvae_560.pt")
    out = tmp_path / "m.onnx"
    assert main(["vqvae2", "--checkpoint", str(tmp_path / "vqvae_560.pt"), "--out", str(out)]) == 0
    assert out.is_file()
    assert "onnxruntime vs torch at 1x3x136x200: codes top: " in capsys.readouterr().out
    (tmp_path / "bad.pt").write_bytes(b"")
    assert main(["vqvae2", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read checkpoint bad.pt") and "\n" not in err
    assert main(["nosuchmodel"]) == 2
