"""The task registry: the one place that knows which tasks exist. Built-in tasks and plug-ins go
through the same ``register(TaskSpec)``; a plug-in that fails to load is listed with its error
and everything else runs on; the card, ``make_task``, the safety checks, ``analyze`` and the
pipeline ask the registry, so a task registered in code needs no other edit."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

import numpy as np
import pytest

from loupe.base import registry
from loupe.base.media import clip_path
from loupe.base.registry import TaskSpec, UnsupportedTask
from loupe.cli import main
from loupe.inference.card import CardError, ModelCard, task_names
from loupe.inference.engine import Engine, ModelError
from loupe.run.analyze import RowWriter, analyze, columns_for
from loupe.run.pipeline import Runner, load_model
from loupe.tasks import make_task

BUILTINS = ("segmentation", "anomaly", "density", "codebook", "compression", "detection", "classification", "keypoints", "instances", "depth", "landmarks")


@pytest.fixture
def reg():
    """The registry as it is, restored after the test (tests register and break plug-ins)."""
    r = registry._registry
    registry.load_plugins()  # the installed ones first, so the restore keeps them
    saved = dict(r.specs), list(r.failed), r.plugins_loaded
    yield registry
    r.specs.clear()
    r.specs.update(saved[0])
    r.failed[:] = saved[1]
    r.plugins_loaded = saved[2]


# --- a task registered in code, as a built-in would be -------------------------------------------
@dataclass(frozen=True)
class BrightnessResult:
    mean: float
    darkest: float


class BrightnessTask:
    """Mean and minimum of a model's one-channel output (here: the grey frame itself)."""

    name = "brightness"
    history = 0

    def __init__(self, engine: Engine, display_max_side: int | None = 1280) -> None:
        from loupe.inference.preprocess import prepare

        self.engine, self.display_max_side, self._prepare = engine, display_max_side, prepare

    def reset(self) -> None:
        pass

    def fresh(self, display_max_side: int | None = None) -> BrightnessTask:
        return BrightnessTask(self.engine, display_max_side)

    def prepare(self, frame):
        x, _ = self._prepare(frame, self.engine.card.input)
        return {self.engine.inputs[0].name: x}, None

    def postprocess(self, outputs, ctx) -> BrightnessResult:
        out = np.asarray(outputs[0], np.float64)
        return BrightnessResult(float(out.mean()), float(out.min()))

    def columns(self) -> list[str]:
        return ["brightness_mean", "brightness_min"]

    def row(self, result: BrightnessResult) -> dict[str, Any]:
        return {"brightness_mean": round(result.mean, 6), "brightness_min": round(result.darkest, 6)}


def identity_model(path, task: str = "brightness"):
    """A grey image in, the same image out (Identity), with a card naming ``task``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["out"])], "identity",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, "h", "w"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    # the card's entries as embed_card writes them (a ModelCard of an unregistered task is refused)
    md = {"loupe.task": task, "loupe.input": json.dumps({"color": "GRAY", "mean": [0.0], "std": [1.0]})}
    for k, v in md.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def brightness_spec(**kw) -> TaskSpec:
    fields = dict(name="brightness", task=BrightnessTask, result=BrightnessResult, history=0,
                  overlap_safe=True, summary="mean grey level")
    fields.update(kw)
    return TaskSpec(**fields)


def test_the_builtin_tasks_are_registered_in_the_cards_order():
    assert registry.names()[:len(BUILTINS)] == BUILTINS
    assert task_names()[:len(BUILTINS)] == BUILTINS
    for spec in registry.all_specs()[:len(BUILTINS)]:
        assert spec.builtin and spec.origin == "built-in" and spec.has_panel
        cls = spec.task_class()  # imported now, by its "module:Class" string
        assert cls.name == spec.name
        assert spec.result_type().__name__.endswith("Result")
        # what the PyInstaller spec adds as hidden imports: the modules the strings name, all real
        assert f"loupe.tasks.{spec.name}" in spec.modules() and f"loupe.ui.panels.{spec.name}" in spec.modules()
        for module in spec.modules():
            assert importlib.util.find_spec(module) is not None, module


def test_a_task_registered_in_code_loads_analyzes_and_overlaps(reg, tmp_path):
    path = identity_model(tmp_path / "grey.onnx")
    with pytest.raises(ModelError, match=r"bad model card: loupe.task must be one of segmentation, anomaly, "
                       r".*got 'brightness' \(a plug-in may add a task: `loupe tasks`"):
        Engine(path)  # not registered yet: the card is refused, naming the tasks there are
    reg.register(brightness_spec())
    m = load_model(str(path), providers="cpu")
    assert isinstance(m.task, BrightnessTask) and m.spec.name == "brightness"
    assert Runner([m]).overlap_safe  # what the spec declares, nothing probed on the task
    assert columns_for([m], with_dicom=True)[-2:] == ["brightness_mean", "brightness_min"]
    buf = io.StringIO()
    summary = analyze([str(clip_path("carphone_pristine.mp4"))], [m],
                      RowWriter(buf, "csv", columns_for([m], False)), max_frames=3)
    assert not summary.failed
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["task"] for r in rows] == ["brightness"] * 3
    assert all(0.05 < float(r["brightness_mean"]) < 0.95 for r in rows)  # a real frame's grey level


def test_a_spec_that_is_not_overlap_safe_keeps_analysis_sequential(reg, tmp_path):
    reg.register(brightness_spec(overlap_safe=False))
    m = load_model(str(identity_model(tmp_path / "grey.onnx")), providers="cpu")
    assert not Runner([m]).overlap_safe


def test_the_registrations_history_must_match_the_tasks(reg, tmp_path):
    reg.register(brightness_spec(history=2))  # the task says 0
    with pytest.raises(UnsupportedTask, match=r"'brightness' task .* is broken: .* 0 past frames, its registration 2"):
        load_model(str(identity_model(tmp_path / "grey.onnx")), providers="cpu")


def test_a_plugin_task_that_crashes_on_a_model_is_reported_as_the_plugins(reg, tmp_path):
    class Crashing(BrightnessTask):
        def __init__(self, engine, display_max_side=1280):
            raise KeyError("gain")

    reg.register(brightness_spec(task=Crashing), origin="loupe-brightness 0.2")
    path = identity_model(tmp_path / "grey.onnx")
    with pytest.raises(UnsupportedTask, match=r"'brightness' task \(loupe-brightness 0.2\) failed on grey.onnx: KeyError"):
        load_model(str(path), providers="cpu")


def test_the_registrations_checks_run_before_the_task_is_made(reg, tmp_path):
    def refuse(engine):
        raise ModelError(f"{engine.path.name}: not a brightness model")

    reg.register(brightness_spec(check_io=refuse))
    with pytest.raises(ModelError, match="grey.onnx: not a brightness model"):
        make_task(Engine(identity_model(tmp_path / "grey.onnx")))


def test_the_registrations_card_check_refuses_a_bad_output_entry(reg, tmp_path):
    def check(output):
        if "gain" in output and not isinstance(output["gain"], (int, float)):
            raise CardError("loupe.output gain must be a number")

    reg.register(brightness_spec(check_card=check))
    md = {"loupe.task": "brightness", "loupe.output": '{"gain": "high"}'}
    with pytest.raises(CardError, match="gain must be a number"):
        ModelCard.from_metadata(md)
    assert ModelCard.from_metadata({"loupe.task": "brightness", "loupe.output": '{"gain": 2}'}).output == {"gain": 2}


def test_a_task_object_no_registered_class_made_has_no_spec(reg, tmp_path):
    class StandIn:
        name = "segmentation"

    assert registry.spec_of(StandIn()) is None
    assert registry.spec_of(load_model(str(identity_model(tmp_path / "s.onnx", "density")), providers="cpu").task).name == "density"


@pytest.mark.parametrize("name", ["Seg", "2d", "", "with space", "ümlaut"])
def test_task_names_are_lowercase_words(name):
    with pytest.raises(ValueError, match="lowercase"):
        TaskSpec(name=name, task=BrightnessTask)


def test_a_name_is_registered_once(reg):
    with pytest.raises(ValueError, match="'density' is already registered \\(built-in\\)"):
        reg.register(TaskSpec(name="density", task=BrightnessTask))


# --- plug-ins through entry points -----------------------------------------------------------------
SPEC = brightness_spec()  # what the entry points below point at
NOT_A_SPEC = object()


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)


def test_plugins_that_fail_are_listed_and_the_rest_load(reg, capsys):
    failed = reg.load_plugins([
        ep("missing", "loupe_no_such_plugin_xyz:SPEC"),
        ep("odd", "tests.test_registry:NOT_A_SPEC"),
        ep("other-name", "tests.test_registry:SPEC"),
        ep("brightness", "tests.test_registry:SPEC"),  # this one is fine
        ep("density", "tests.test_registry:SPEC"),  # name taken by a built-in (and mismatched)
    ])
    why = {f.name: f.error for f in failed}
    assert set(why) == {"missing", "odd", "other-name", "density"}
    assert why["missing"].startswith("ModuleNotFoundError") and "loupe_no_such_plugin_xyz" in why["missing"]
    assert "not a loupe.base.registry.TaskSpec" in why["odd"]
    assert "registers a task named 'brightness'" in why["other-name"]
    assert reg.get("brightness").origin == "entry point tests.test_registry:SPEC"
    assert reg.get("density").builtin

    assert main(["tasks"]) == 1  # listed, with a non-zero status: something is broken
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == [*BUILTINS, "brightness", "missing", "odd", "other-name", "density"]
    for ln in lines:
        assert re.match(r"[a-z][a-z0-9_-]*  ", ln)
    assert re.match(r"segmentation +built-in +panel ", lines[0])
    assert re.match(r"brightness +entry point tests.test_registry:SPEC +no panel ", lines[len(BUILTINS)])
    assert re.match(r"missing +entry point loupe_no_such_plugin_xyz:SPEC +FAILED +ModuleNotFoundError", lines[len(BUILTINS) + 1])


def test_a_card_naming_a_failed_plugin_says_why(reg, tmp_path):
    reg.load_plugins([ep("sharpness", "loupe_no_such_plugin_xyz:SPEC")])
    with pytest.raises(CardError, match=r"'sharpness' comes from a plug-in that failed to load .*ModuleNotFoundError"):
        ModelCard(task="sharpness")
    with pytest.raises(UnsupportedTask, match="'sharpness' task's plug-in .* failed to load"):
        reg.get("sharpness")


def test_a_plugin_whose_task_class_does_not_import_fails_when_its_model_loads(reg, tmp_path):
    reg.register(brightness_spec(task="loupe_no_such_plugin_xyz.task:Task"), origin="broken-plugin 1.0")
    path = identity_model(tmp_path / "grey.onnx")
    with pytest.raises(UnsupportedTask, match=r"'brightness' task \(broken-plugin 1.0\) cannot load its task .*ModuleNotFoundError"):
        load_model(str(path), providers="cpu")
    assert main(["analyze", str(clip_path("carphone_pristine.mp4")), "--model", str(path),
                 "--out", str(tmp_path / "rows.csv")]) == 2  # one line naming the plug-in, exit 2


def test_loupe_tasks_lists_the_builtins(capsys):
    assert main(["tasks"]) == 0 or registry.failures()  # 1 only when an installed plug-in is broken
    out = capsys.readouterr().out.splitlines()
    for name, line in zip(BUILTINS, out):
        assert re.match(rf"{name} +built-in +panel +\S", line), line
