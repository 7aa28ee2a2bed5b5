"""ONNX Runtime engine: provider choice with honest reporting (Qt-free).

The engine asks for TensorRT (when its libraries load), then CUDA, then CPU, and reports the
providers the session *actually* runs (``session.get_providers()``): ONNX Runtime's
``get_available_providers()`` lists CUDA even where its libraries cannot load. For each GPU
provider that is not used, ``provider_note`` says why in one line. ONNX Runtime's own log lines
are silenced so the app's messages are the ones a user reads.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from loupe.base.errors import LoupeError
from loupe.inference.card import (
    CardError,
    ModelCard,
    has_card,
    read_sidecar,
)
from loupe.inference.guess import Guess, GuessError, guess_card, output_ops

logger = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_PROVIDER_LIBS = {
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
    "CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
}
SHORT = {
    "TensorrtExecutionProvider": "TensorRT",
    "CUDAExecutionProvider": "CUDA",
    "CPUExecutionProvider": "CPU",
}


class ModelError(LoupeError):
    """A model cannot be loaded or run; the message is meant for the user."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | str | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = "x".join(str(d) if d is not None else "?" for d in self.shape)
        return f"{self.name}: {self.dtype} [{dims}]"


@cache
def _ort():
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # the app reports provider problems itself
    _preload_gpu_libraries(ort)
    return ort


def _preload_gpu_libraries(ort) -> None:
    """Load CUDA/cuDNN from pip wheels (``loupe[gpu]``) and TensorRT from ``tensorrt-cu*`` so the
    providers find them; ONNX Runtime does not look in site-packages by itself. Quiet when absent."""
    import contextlib
    import glob
    import importlib.util
    import io

    if importlib.util.find_spec("nvidia") is not None and hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                ort.preload_dlls()
            except Exception:  # a partial CUDA install is reported by gpu_provider_status
                logger.debug("preloading CUDA libraries failed", exc_info=True)
    spec = importlib.util.find_spec("tensorrt_libs")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            for lib in sorted(glob.glob(os.path.join(folder, "libnv*.so*"))):
                try:
                    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    logger.debug("could not preload %s", lib, exc_info=True)


@cache
def gpu_provider_status() -> dict[str, str | None]:
    """For each GPU provider: None if its libraries load here, else a one-line reason."""
    ort = _ort()
    return probe_gpu_providers(ort.get_available_providers(), Path(ort.__file__).parent / "capi")


def _load_library(path: str, mode: int) -> object:
    return ctypes.CDLL(path, mode=mode)


def probe_gpu_providers(
    available: Iterable[str],
    capi: Path,
    load: Callable[[str, int], object] = _load_library,
) -> dict[str, str | None]:
    """``gpu_provider_status`` for a given onnxruntime build: ``available`` is what it lists,
    ``capi`` the folder of its provider libraries, and ``load(path, mode)`` loads a library
    (``ctypes.CDLL``; it raises OSError naming the first library that is missing)."""
    available = set(available)
    status: dict[str, str | None] = {}
    shared = capi / "libonnxruntime_providers_shared.so"
    for prov, lib in _PROVIDER_LIBS.items():
        if prov not in available:
            status[prov] = f"this onnxruntime build has no {SHORT[prov]} provider (install onnxruntime-gpu)"
            continue
        path = capi / lib
        if not path.exists():
            status[prov] = f"{lib} is not installed"
            continue
        try:
            if shared.exists():
                load(str(shared), ctypes.RTLD_GLOBAL)
            load(str(path), ctypes.DEFAULT_MODE)
            status[prov] = None
        except OSError as e:
            missing = str(e).split(":")[0].strip()
            hint = "pip install 'loupe[gpu]'" if prov.startswith("CUDA") else "pip install 'tensorrt-cu13>=10,<11'"
            status[prov] = f"{missing} not found ({hint})"
    return status


def trt_cache_dir() -> Path:
    """Folder for TensorRT's compiled engines: $LOUPE_TRT_CACHE, else the user cache dir + /trt.

    The user cache dir comes from platformdirs (~/.cache/loupe on Linux, honouring
    XDG_CACHE_HOME; ~/Library/Caches/loupe on macOS; %LOCALAPPDATA%/loupe/Cache on Windows).
    Nothing is created here: see ``_tensorrt_options``.
    """
    env = os.environ.get("LOUPE_TRT_CACHE")
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs is a dependency; keep working without it anyway
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loupe"
    else:
        base = Path(user_cache_dir("loupe", appauthor=False))
    return base / "trt"


def _tensorrt_options() -> dict[str, Any]:
    """TensorRT provider options; creates the engine cache folder (only when TensorRT is asked for)."""
    opts: dict[str, Any] = {"trt_fp16_enable": True}
    cache = trt_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        logger.warning("TensorRT engine cache disabled: cannot create %s (%s)", cache, e.strerror or e)
        return opts
    opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache))
    return opts


THREADS_ENV = "LOUPE_ORT_THREADS"


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads of one core count once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    cores = set()
    for c in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        try:
            cores.add(((base / "physical_package_id").read_text().strip(), (base / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(c)))
    return max(1, len(cores))


def default_threads() -> tuple[int, str]:
    """ONNX Runtime intra-op threads when none are asked for, and where the number came from.

    ``$LOUPE_ORT_THREADS`` wins; otherwise one per physical core (measured on the 2-core dev
    machine: 2 threads beat 1 for a 720p model even with decode running on its own thread;
    hyper-threads add nothing to convolution throughput). Inter-op parallelism stays at 1:
    the graphs are chains, and a second pool only competes with decode and the UI. The pool
    threads do not spin while idle (see ``Engine``)."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            logger.warning("%s=%r is not a number of threads; using the default", THREADS_ENV, env)
        else:
            if n > 0:
                return n, f"${THREADS_ENV}"
            logger.warning("%s=%r must be at least 1; using the default", THREADS_ENV, env)
    return physical_cores(), "physical cores"


def choose_providers(preference: str = "auto", status: dict[str, str | None] | None = None) -> list[str]:
    """Providers to ask for, best first. preference: auto | tensorrt | cuda | cpu; status:
    ``gpu_provider_status()`` unless given."""
    preference = preference.lower()
    if preference == "cpu":
        return ["CPUExecutionProvider"]
    if status is None:
        status = gpu_provider_status()
    order = list(GPU_PROVIDERS)
    if preference == "cuda":
        order = ["CUDAExecutionProvider"]
    elif preference == "tensorrt":
        order = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    return [p for p in order if status.get(p) is None] + ["CPUExecutionProvider"]


class Engine:
    """One ONNX model in an ONNX Runtime session, plus its card."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: str = "auto",
        threads: int | None = None,
        card: ModelCard | None = None,
        task: str | None = None,
    ) -> None:
        """``task`` picks the task of a model without a card among the guessed candidates (``loupe
        analyze --task``); a model with a card ignores it (``guess`` is None for those)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"No such model file: {self.path}")
        from loupe.inference.safety import check_model_file

        check_model_file(self.path)  # not a pickle, not truncated, external data inside its folder
        ort = _ort()
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            self.threads, self.threads_from = int(threads), "asked"
        else:
            self.threads, self.threads_from = default_threads()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads sleep instead of spinning: they would steal the CPU that decode, the
        # next frame's post-processing and the UI need (measured on 2 cores under load: bare
        # session.run itself ran up to 2x faster without spinning when other threads were busy).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        asked = choose_providers(providers)
        provider_args: list[Any] = []
        for p in asked:
            if p == "TensorrtExecutionProvider":
                provider_args.append((p, _tensorrt_options()))
            else:
                provider_args.append(p)
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=provider_args)
        except Exception as e:  # onnxruntime raises its own exception types
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelError(f"{self.path.name} is not a model ONNX Runtime can load: {msg}") from None
        self.providers: list[str] = list(self.session.get_providers())
        self.asked_providers = asked
        self.inputs = [TensorInfo(i.name, tuple(i.shape), i.type) for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, tuple(o.shape), o.type) for o in self.session.get_outputs()]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.guess: Guess | None = None  # what was guessed, for a model without a card
        self.card = card or self._resolve_card(task)
        self.provider_note = self._provider_note(providers)
        logger.info("loaded %s on %s", self.path.name, ", ".join(self.providers))

    # --- card ----------------------------------------------------------------------
    def _resolve_card(self, task: str | None = None) -> ModelCard:
        try:
            if has_card(self.metadata):
                return ModelCard.from_metadata(self.metadata)
            side = read_sidecar(self.path)
        except CardError as e:
            raise ModelError(f"{self.path.name}: bad model card: {e}") from None
        if side is not None:
            return side
        try:
            guess = guess_card(self.inputs, self.outputs, self.metadata, self.path.stem,
                               filename=self.path.name, final_ops=output_ops(self.path))
            self.guess = guess.pick(task, self.path.name) if task else guess
        except GuessError as e:
            raise ModelError(str(e)) from None
        return self.guess.card

    @property
    def needs_task(self) -> bool:
        """True when the card was guessed from shapes and the user should confirm the task (a card
        read from an exporter's metadata that says the task, e.g. Ultralytics', needs no question)."""
        return self.card.origin == "inferred"

    # --- providers -------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return SHORT.get(self.providers[0], self.providers[0]) if self.providers else "?"

    def _provider_note(self, preference: str) -> str:
        return provider_note(self.providers, preference, gpu_provider_status())

    # --- run -------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self.session.run(None, feeds)
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
            raise ModelError(f"{self.path.name} failed on input {shapes}: {msg}") from None

    def describe(self) -> str:
        lines = [
            f"model: {self.path}",
            f"task: {self.card.task} (card from {self.card.origin})",
            f"name: {self.card.name or self.path.stem}",
        ]
        if self.guess is not None and self.card.origin != "sidecar":
            lines.append(f"guess: {self.guess.note}")
        inp = self.card.input
        lines.append(
            f"input: {inp.color}, scale {inp.scale:.6g}, mean {list(inp.mean)}, std {list(inp.std)}, "
            + (f"fixed size {inp.fixed_size}" if inp.fixed_size else f"size multiple of {inp.size_multiple}")
            + (f", letterbox padded with {inp.pad_value:g}" if inp.letterbox else "")
            + (", centre crop" if inp.center_crop else "")
        )
        if self.card.labels:
            lines.append(f"labels ({len(self.card.labels)}): {', '.join(self.card.labels)}")
        if self.card.output:
            lines.append(f"output: {self.card.output}")
        if self.card.source:
            for k, v in self.card.source.items():
                lines.append(f"source.{k}: {v}")
        lines += ["inputs:"] + [f"  {i.describe()}" for i in self.inputs]
        lines += ["outputs:"] + [f"  {o.describe()}" for o in self.outputs]
        lines.append(f"providers: {', '.join(self.providers)}")
        lines.append(f"threads: {self.threads} intra-op ({self.threads_from}), 1 inter-op, no spinning")
        lines.append(f"note: {self.provider_note}")
        return "\n".join(lines)


def provider_note(running: list[str], preference: str, status: dict[str, str | None]) -> str:
    """One line on where a session runs: ``running`` is its providers (best first), ``status``
    the GPU provider status; on CPU it says why (the last GPU provider's reason)."""
    if running and running[0] in GPU_PROVIDERS:
        return f"running on {SHORT[running[0]]}"
    if preference.lower() == "cpu":
        return "running on CPU (CPU was asked for)"
    reasons = [f"{SHORT[p]}: {status[p]}" for p in GPU_PROVIDERS if status.get(p)]
    if not reasons:
        reasons = ["the GPU provider failed to start for this model"]
    return "running on CPU; " + reasons[-1]


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """n distinct colours (golden-angle hues), deterministic."""
    import colorsys

    cols = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        cols.append((int(r * 255), int(g * 255), int(b * 255)))
    return tuple(cols)
