"""The task registry: the one place that knows which tasks exist (Qt-free, imports nothing of Loupe).

A task is one ``TaskSpec``: its name (what a model card's ``loupe.task`` says), where its task
class and its panel live, the checks a model must pass before the task uses it, how many past
frames its results need, and what ``loupe analyze`` may assume about it. The card's list of
tasks, ``make_task``, the window's panels, the safety checks, ``--resume``, Ray and ``analyze``
all ask this registry; nothing probes a task for optional attributes.

Built-in tasks are registered below with ``register`` (so an uninstalled checkout and the
PyInstaller bundle find them); a third-party package registers through the entry-point group
``loupe.tasks`` (see docs/PLUGINS.md): the entry point's name is the task's name and its object a
``TaskSpec``. A plug-in that fails to load is kept with its error (``failures()``, ``loupe
tasks``) and the app runs on without it.

References to code (``task``, ``panel``, ``result``, ``check_io``, ``check_card``, ``history``,
``scorer``, ``comparer``)
are either the object itself or a ``"module:attribute"`` string imported on first use, so asking
which tasks exist imports no task module, no ONNX Runtime and no Qt.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from loupe.base.errors import LoupeError

logger = logging.getLogger(__name__)

__all__ = [
    "ENTRY_POINT_GROUP",
    "NAME_PATTERN",
    "PluginFailure",
    "TaskSpec",
    "UnsupportedTask",
    "all_specs",
    "failures",
    "get",
    "names",
    "register",
    "resolve",
    "spec_of",
]

ENTRY_POINT_GROUP = "loupe.tasks"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]*")
BUILTIN = "built-in"

#: A reference to code: the object itself, or ``"package.module:attribute"`` imported on first use.
Ref = Any


class UnsupportedTask(LoupeError):
    """A model names a task no registered plug-in provides, or whose code cannot be loaded; the
    message is meant for the user."""


def resolve(ref: Ref) -> Any:
    """The object a reference stands for (``"module:attr.sub"`` is imported now)."""
    if not isinstance(ref, str):
        return ref
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"a code reference must look like 'package.module:name', got {ref!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class TaskSpec:
    """Everything Loupe needs to know about one task.

    name: what ``loupe.task`` says on a model card; lowercase, ``[a-z][a-z0-9_-]*``.
    task: the task class; ``task(engine, display_max_side=...)`` makes one for a loaded model
        (it follows ``loupe.tasks.base.Task``). Construction may raise ``ModelError`` or
        ``CardError`` with a message for the user.
    panel: ``make_panel(model, host) -> Panel`` for the window (``loupe.ui.panels.base``), or
        None: the window then shows the task's ``analyze`` values in a table.
    result: the frozen result class ``postprocess`` returns (what the panel receives).
    check_io: ``check(engine) -> None``, raising ``ModelError`` when the model's inputs/outputs
        cannot be what the task reads; run before the task is made. None states that the task
        class checks them itself when it is made (codebook, compression).
    check_card: ``check(output: dict) -> None``, raising ``CardError`` naming the key when the
        card's ``loupe.output`` entries are malformed; run when a card is read.
    history: past frames a result depends on besides its own: an int, None for "every frame
        since the input's start" (never resumed mid-input nor split on Ray), or a reference to
        ``history(card) -> int | None`` when it depends on the model. The task object's
        ``history`` must agree (``make_task`` checks).
    overlap_safe: ``postprocess`` reads only its outputs and context (not state a later
        ``prepare`` changes), so ``loupe analyze`` may post-process a frame while the next one is
        inferred.
    physical_columns: the task has ``physical_columns()`` (columns added for inputs with physical
        units, DICOM) and its results carry ``class_area_mm2`` (mm² per label, or None), from
        which ``analyze`` sums volumes per series.
    scorer: the class that scores the task's results against ground-truth labels
        (``loupe.tasks.scoring.Scorer``: ``scorer(task)``, then ``columns``, ``score``,
        ``frame_score``, ``summary``), or None: the task cannot be scored (``loupe analyze --labels``).
    comparer: ``compare(a, b) -> loupe.tasks.agreement.Agreement``, how far two models' results
        on the same frame agree (0..1, the same value whichever is A), or None: two models of the
        task cannot be compared (``loupe analyze --compare``, the window's Compare view).
    summary: one line for ``loupe tasks``.
    origin: "built-in", or the distribution and version that registered it (set by the registry).
    """

    name: str
    task: Ref
    panel: Ref | None = None
    result: Ref | None = None
    check_io: Ref | None = None
    check_card: Ref | None = None
    history: int | Ref | None = 0
    overlap_safe: bool = False
    physical_columns: bool = False
    scorer: Ref | None = None
    comparer: Ref | None = None
    summary: str = ""
    origin: str = BUILTIN

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or NAME_PATTERN.fullmatch(self.name) is None:
            raise ValueError(f"a task name is lowercase letters, digits, '_' and '-', starting with a "
                             f"letter; got {self.name!r}")
        if self.task is None:
            raise ValueError(f"task {self.name!r} names no task class")
        if isinstance(self.history, bool) or (isinstance(self.history, int) and self.history < 0):
            raise ValueError(f"task {self.name!r}: history must be a count of frames >= 0, None or "
                             f"a reference to history(card); got {self.history!r}")

    @property
    def builtin(self) -> bool:
        return self.origin == BUILTIN

    @property
    def has_panel(self) -> bool:
        return self.panel is not None

    def task_class(self) -> type:
        return self._load("task", self.task)

    def make(self, engine: Any, display_max_side: int | None = 1280) -> Any:
        """The task object for a loaded engine, after the checks (see ``loupe.tasks.make_task``)."""
        self.check_model(engine)
        cls = self.task_class()
        try:
            task = cls(engine, display_max_side=display_max_side)
        except Exception as e:
            if self.builtin or isinstance(e, LoupeError):
                raise  # a message for the user (or a bug of Loupe's own, reported as such)
            # a plug-in's bug: say whose, and let the app run on without this model
            raise UnsupportedTask(f"the {self.name!r} task ({self.origin}) failed on {engine.path.name}: "
                                  f"{type(e).__name__}: {e}") from e
        want = self.history_for(engine.card)
        if task.history != want:
            raise UnsupportedTask(
                f"the {self.name!r} task ({self.origin}) is broken: its task says it needs "
                f"{task.history!r} past frames, its registration {want!r}"
            )
        return task

    def make_panel(self, model: Any, host: Any) -> Any:
        """The window's panel for a loaded model (only the UI calls this; it imports Qt)."""
        if self.panel is None:
            raise LookupError(f"the {self.name!r} task has no panel")
        return self._load("panel", self.panel)(model, host)

    def result_type(self) -> type | None:
        return None if self.result is None else self._load("result", self.result)

    def scorer_class(self) -> type | None:
        return None if self.scorer is None else self._load("scorer", self.scorer)

    def comparer_fn(self) -> Any:
        """The task's ``compare(a, b) -> Agreement``, or None when it has none."""
        return None if self.comparer is None else self._load("comparer", self.comparer)

    def check_model(self, engine: Any) -> None:
        if self.check_io is not None:
            self._load("check_io", self.check_io)(engine)

    def check_output(self, output: dict[str, Any]) -> None:
        if self.check_card is not None:
            self._load("check_card", self.check_card)(output)

    def history_for(self, card: Any) -> int | None:
        h = self.history
        if h is None or isinstance(h, int):
            return h
        return self._load("history", h)(card)

    def modules(self) -> list[str]:
        """The modules its ``"module:attribute"`` references name (a bundler's hidden imports)."""
        refs = (self.task, self.panel, self.result, self.check_io, self.check_card, self.history, self.scorer,
                self.comparer)
        return sorted({r.partition(":")[0] for r in refs if isinstance(r, str)})

    def describe_history(self) -> str:
        h = self.history
        if h is None:
            return "needs every frame since the start"
        if isinstance(h, int):
            return f"history {h}"
        return "history from the card"

    def _load(self, what: str, ref: Ref) -> Any:
        try:
            return resolve(ref)
        except Exception as e:  # a plug-in's code that does not import: say whose and why
            raise UnsupportedTask(
                f"the {self.name!r} task ({self.origin}) cannot load its {what} {ref!r}: "
                f"{type(e).__name__}: {e}"
            ) from e


@dataclass(frozen=True)
class PluginFailure:
    """A plug-in that could not be registered: its entry point, its distribution and why."""

    name: str
    origin: str
    error: str


@dataclass
class _Registry:
    specs: dict[str, TaskSpec] = field(default_factory=dict)
    failed: list[PluginFailure] = field(default_factory=list)
    plugins_loaded: bool = False


_registry = _Registry()
_lock = threading.RLock()


def register(spec: TaskSpec, origin: str = BUILTIN) -> TaskSpec:
    """Add a task (built-ins call this in code, plug-ins through their entry point). A name
    that is already taken is refused with ValueError (the first registration stays)."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"register() takes a TaskSpec, got {type(spec).__name__}")
    spec = replace(spec, origin=origin)
    with _lock:
        have = _registry.specs.get(spec.name)
        if have is not None:
            raise ValueError(f"task {spec.name!r} is already registered ({have.origin})")
        _registry.specs[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a task (tests; a plug-in being reloaded)."""
    with _lock:
        _registry.specs.pop(name, None)


def _distribution(ep: Any) -> str:
    dist = getattr(ep, "dist", None)  # EntryPoint.dist: None for entry points made by hand
    if dist is None:
        return f"entry point {ep.value}"
    return f"{dist.metadata['Name']} {dist.version}"


def _entry_points() -> Iterable[Any]:
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


def load_plugins(entry_points: Iterable[Any] | None = None) -> list[PluginFailure]:
    """Register the tasks of the ``loupe.tasks`` entry points (once; ``entry_points`` for
    tests). Each failure is kept and logged; the others still load."""
    with _lock:
        if entry_points is None:
            if _registry.plugins_loaded:
                return list(_registry.failed)
            _registry.plugins_loaded = True
            try:
                entry_points = list(_entry_points())
            except Exception as e:  # broken metadata of some installed package
                logger.warning("cannot list the %s entry points: %s", ENTRY_POINT_GROUP, e)
                entry_points = []
        new: list[PluginFailure] = []
        for ep in entry_points:
            origin = _distribution(ep)
            try:
                spec = _load_entry_point(ep)
                register(spec, origin=origin)
            except Exception as e:
                fail = PluginFailure(str(ep.name), origin, f"{type(e).__name__}: {e}")
                logger.warning("task plug-in %s (%s) not loaded: %s", fail.name, origin, fail.error)
                new.append(fail)
        _registry.failed.extend(new)
        return new


def _load_entry_point(ep: Any) -> TaskSpec:
    spec = ep.load()
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"entry point {ep.value} is a {type(spec).__name__}, not a loupe.base.registry.TaskSpec")
    if spec.name != ep.name:
        raise ValueError(f"entry point {ep.name!r} registers a task named {spec.name!r}; the two must match")
    return spec


def _ensure_loaded() -> None:
    if not _registry.plugins_loaded:
        load_plugins()


def all_specs() -> list[TaskSpec]:
    """Every registered task: the built-ins in their order, then plug-ins by name."""
    _ensure_loaded()
    with _lock:
        specs = list(_registry.specs.values())
    return [s for s in specs if s.builtin] + sorted((s for s in specs if not s.builtin), key=lambda s: s.name)


def names() -> tuple[str, ...]:
    return tuple(s.name for s in all_specs())


def get(name: str) -> TaskSpec:
    """The spec of task ``name``; UnsupportedTask (naming the known tasks, and a plug-in of that
    name that failed to load) when there is none."""
    _ensure_loaded()
    with _lock:
        spec = _registry.specs.get(name)
        failed = [f for f in _registry.failed if f.name == name]
    if spec is not None:
        return spec
    if failed:
        f = failed[0]
        raise UnsupportedTask(f"the {name!r} task's plug-in ({f.origin}) failed to load: {f.error}")
    raise UnsupportedTask(f"no installed plug-in provides the {name!r} task (this Loupe knows: "
                          f"{', '.join(names())}; `loupe tasks` lists them)")


def find(name: str) -> TaskSpec | None:
    _ensure_loaded()
    with _lock:
        return _registry.specs.get(name)


def spec_of(task: Any) -> TaskSpec | None:
    """The spec a task object belongs to: the one of its ``name`` whose task class it is an
    instance of (None for a task object no registered class made, e.g. a test's stand-in)."""
    spec = find(task.name)
    if spec is None:
        return None
    try:
        cls = spec.task_class()
    except UnsupportedTask:
        return None
    return spec if isinstance(task, cls) else None


def failures() -> list[PluginFailure]:
    """Plug-ins that failed to load, with their errors."""
    _ensure_loaded()
    with _lock:
        return list(_registry.failed)


# ----------------------------------------------------------------------------- built-in tasks
# A built-in task is one entry here, one module in loupe.tasks and one in loupe.ui.panels.

def _builtin(name: str, summary: str, *, checks: bool = True, history: int | Ref | None = 0,
             overlap_safe: bool = True, physical_columns: bool = False, scorer: str | None = None,
             comparer: str | None = None) -> TaskSpec:
    """The spec of a built-in task, whose code follows one layout: ``loupe.tasks.<name>`` holds
    ``<Name>Task`` and ``<Name>Result``, ``loupe.ui.panels.<name>`` its ``make_panel`` and, with
    ``checks``, ``loupe.inference.safety:check_<name>`` and ``loupe.inference.card:
    check_<name>_output`` check the model and the card (without, the task class checks its model
    when it is made); ``scorer`` names a class of ``loupe.tasks.scoring``, ``comparer`` a function
    of ``loupe.tasks.agreement``."""
    module, cls = f"loupe.tasks.{name}", name.capitalize()
    return TaskSpec(
        name=name,
        task=f"{module}:{cls}Task",
        panel=f"loupe.ui.panels.{name}:make_panel",
        result=f"{module}:{cls}Result",
        check_io=f"loupe.inference.safety:check_{name}" if checks else None,
        check_card=f"loupe.inference.card:check_{name}_output" if checks else None,
        history=history,
        overlap_safe=overlap_safe,
        physical_columns=physical_columns,
        scorer=None if scorer is None else f"loupe.tasks.scoring:{scorer}",
        comparer=None if comparer is None else f"loupe.tasks.agreement:{comparer}",
        summary=summary,
    )


_BUILTINS = (
    _builtin("segmentation", "class per pixel: areas (and mm², mL with DICOM spacing)", physical_columns=True,
             scorer="SegmentationScorer", comparer="compare_segmentation"),
    _builtin("anomaly", "next-frame prediction: PSNR, anomaly score, flagged frames",
             history="loupe.tasks.anomaly:past_frames"),
    _builtin("density", "density map: count, count in a region"),
    # CodebookTask checks its levels' outputs against the card when made
    _builtin("codebook", "vector-quantised codes: codes used, perplexity", checks=False),
    # CompressionTask checks its index input and frame output when made; history 0: the decoder
    # is fed the frame's index, never earlier frames
    _builtin("compression", "neural codec: PSNR/SSIM against the frame, bits per pixel", checks=False,
             overlap_safe=False),
    # postprocess reads its outputs, the geometry and the user's thresholds (settings, not state
    # a later prepare changes)
    _builtin("detection", "boxes with label and score: count per class", scorer="DetectionScorer",
             comparer="compare_boxes"),
    _builtin("classification", "class of the whole frame: top-k labels and scores, top label over time",
             scorer="ClassificationScorer", comparer="compare_classification"),
    _builtin("keypoints", "pose: boxes with keypoints and a skeleton, count per class",
             scorer="DetectionScorer", comparer="compare_boxes"),  # scored and compared by its boxes (OKS later)
    # InstancesTask checks its two outputs (predictions, prototypes) when made
    _builtin("instances", "detection with a mask per box: count per class, mask areas", checks=False,
             scorer="DetectionScorer", comparer="compare_boxes"),  # scored and compared by its boxes
    _builtin("depth", "depth (or another one-value) map: colour map with units, min/median/max"),
    # landmark points joined into the card's contours; closed contours' areas (mm² with a spacing)
    _builtin("landmarks", "landmark points joined into contours: area per closed contour (mm² with DICOM spacing)",
             physical_columns=True),
)

for _spec in _BUILTINS:
    register(_spec)
