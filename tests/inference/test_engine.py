import numpy as np
import pytest

from loupe.inference.engine import Engine, ModelError, choose_providers, gpu_provider_status
from tests.helpers import make_fixed_size_model


def test_engine_reports_the_providers_that_run(argmax_model):
    eng = Engine(argmax_model)
    assert eng.providers == eng.session.get_providers()
    assert eng.providers[-1] == "CPUExecutionProvider"
    if eng.providers[0] == "CPUExecutionProvider":
        # one line saying why no GPU provider runs
        assert eng.provider_note.startswith("running on CPU")
        assert "\n" not in eng.provider_note
    assert eng.card.task == "segmentation" and eng.card.origin == "metadata"


def test_cpu_preference_and_provider_probe():
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    status = gpu_provider_status()
    assert set(status) == {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
    for prov, reason in status.items():
        if reason is None:
            assert prov in choose_providers("auto")
        else:
            assert prov not in choose_providers("auto")


def test_engine_runs(argmax_model):
    eng = Engine(argmax_model, providers="cpu")
    x = np.random.default_rng(0).random((1, 3, 8, 12), dtype=np.float32)
    (y,) = eng.run({"image": x})
    np.testing.assert_array_equal(y, x)


def test_not_a_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not onnx")
    with pytest.raises(ModelError, match=r"bad.onnx is not an ONNX model \(it is a text file\)"):
        Engine(bad)
    with pytest.raises(ModelError, match="No such model file"):
        Engine(tmp_path / "missing.onnx")


def test_model_without_card_is_inferred_from_shapes(tmp_path):
    path = make_fixed_size_model(tmp_path / "nocard.onnx", (32, 48))
    eng = Engine(path)
    assert eng.needs_task
    assert eng.card.task == "segmentation"
    assert eng.card.input.fixed_size == (32, 48)
    assert len(eng.card.labels) == 4


def test_wrong_input_shape_names_the_shapes(tmp_path):
    eng = Engine(make_fixed_size_model(tmp_path / "fixed.onnx", (32, 48)))
    with pytest.raises(ModelError, match=r"failed on input input \(1, 3, 10, 10\)"):
        eng.run({"input": np.zeros((1, 3, 10, 10), np.float32)})
