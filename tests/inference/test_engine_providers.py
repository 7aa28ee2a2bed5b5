"""GPU provider choice with the provider status mocked: which providers each preference asks for,
in which order, the one-line note when the session ends up on CPU, and how a library that cannot
load is reported. These run the same on every machine, GPU or not."""

from __future__ import annotations

import ctypes

import pytest

from loupe.inference import engine
from loupe.inference.engine import Engine, choose_providers, probe_gpu_providers, provider_note

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
BOTH = {TRT: None, CUDA: None}
NO_TRT = {TRT: "libnvinfer.so.10 not found (pip install 'tensorrt-cu13>=10,<11')", CUDA: None}
NO_CUDA = {TRT: None, CUDA: "libcudnn.so.9 not found (pip install 'loupe[gpu]')"}
NEITHER = {TRT: NO_TRT[TRT], CUDA: NO_CUDA[CUDA]}


@pytest.mark.parametrize(
    ("status", "preference", "expected"),
    [
        (BOTH, "auto", [TRT, CUDA, CPU]),
        (BOTH, "tensorrt", [TRT, CUDA, CPU]),
        (BOTH, "cuda", [CUDA, CPU]),  # CUDA asked for: TensorRT is not tried
        (BOTH, "CUDA", [CUDA, CPU]),
        (BOTH, "cpu", [CPU]),
        (NO_TRT, "auto", [CUDA, CPU]),
        (NO_TRT, "tensorrt", [CUDA, CPU]),  # TensorRT missing: CUDA next, then CPU
        (NO_TRT, "cuda", [CUDA, CPU]),
        (NO_CUDA, "auto", [TRT, CPU]),
        (NO_CUDA, "tensorrt", [TRT, CPU]),
        (NO_CUDA, "cuda", [CPU]),
        (NEITHER, "auto", [CPU]),
        (NEITHER, "tensorrt", [CPU]),
        (NEITHER, "cuda", [CPU]),
    ],
)
def test_order_of_the_providers_asked_for(status, preference, expected):
    assert choose_providers(preference, status) == expected


def test_choose_providers_reads_the_probed_status_by_default(monkeypatch):
    monkeypatch.setattr(engine, "gpu_provider_status", lambda: NO_TRT)
    assert choose_providers("auto") == [CUDA, CPU]
    monkeypatch.setattr(engine, "gpu_provider_status", lambda: BOTH)
    assert choose_providers("auto") == [TRT, CUDA, CPU]


def test_note_names_the_gpu_provider_that_runs():
    assert provider_note([TRT, CUDA, CPU], "auto", BOTH) == "running on TensorRT"
    assert provider_note([CUDA, CPU], "tensorrt", NO_TRT) == "running on CUDA"


def test_cpu_fallback_note_says_why_in_one_line():
    assert provider_note([CPU], "cpu", NEITHER) == "running on CPU (CPU was asked for)"
    assert provider_note([CPU], "auto", NEITHER) == (
        "running on CPU; CUDA: libcudnn.so.9 not found (pip install 'loupe[gpu]')")
    assert provider_note([CPU], "auto", NO_CUDA) == (
        "running on CPU; CUDA: libcudnn.so.9 not found (pip install 'loupe[gpu]')")
    assert provider_note([CPU], "tensorrt", NO_TRT) == (
        "running on CPU; TensorRT: libnvinfer.so.10 not found (pip install 'tensorrt-cu13>=10,<11')")
    # the libraries load but the session still runs on CPU (no device, a driver too old, ...)
    assert provider_note([CPU], "auto", BOTH) == "running on CPU; the GPU provider failed to start for this model"


def _capi(tmp_path, *libs):
    capi = tmp_path / "capi"
    capi.mkdir()
    for lib in libs:
        (capi / lib).write_bytes(b"")
    return capi


ALL_LIBS = ("libonnxruntime_providers_shared.so", "libonnxruntime_providers_tensorrt.so",
            "libonnxruntime_providers_cuda.so")


def test_probe_of_a_cpu_only_build(tmp_path):
    status = probe_gpu_providers([CPU], _capi(tmp_path))
    assert status == {
        TRT: "this onnxruntime build has no TensorRT provider (install onnxruntime-gpu)",
        CUDA: "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)",
    }


def test_probe_of_a_gpu_build_missing_a_provider_library(tmp_path):
    loads = []
    capi = _capi(tmp_path, "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so")
    status = probe_gpu_providers([TRT, CUDA, CPU], capi, lambda path, mode: loads.append(path))
    assert status == {TRT: "libonnxruntime_providers_tensorrt.so is not installed", CUDA: None}
    assert loads[-1] == str(capi / "libonnxruntime_providers_cuda.so")


def test_probe_reports_the_library_that_cannot_load(tmp_path):
    """The library-load error branch: the provider's library is there but one it needs is not;
    the reason names that library and what to install for it."""
    capi = _capi(tmp_path, *ALL_LIBS)
    calls = []

    def load(path, mode):
        calls.append((path.rsplit("/", 1)[-1], mode))
        if path.endswith("tensorrt.so"):
            raise OSError("libnvinfer.so.10: cannot open shared object file: No such file or directory")
        if path.endswith("cuda.so"):
            raise OSError("libcublasLt.so.13: cannot open shared object file: No such file or directory")

    status = probe_gpu_providers([TRT, CUDA, CPU], capi, load)
    assert status == {
        TRT: "libnvinfer.so.10 not found (pip install 'tensorrt-cu13>=10,<11')",
        CUDA: "libcublasLt.so.13 not found (pip install 'loupe[gpu]')",
    }
    # the shared provider library is loaded globally before each provider's own library
    assert calls == [
        ("libonnxruntime_providers_shared.so", ctypes.RTLD_GLOBAL), ("libonnxruntime_providers_tensorrt.so", ctypes.DEFAULT_MODE),
        ("libonnxruntime_providers_shared.so", ctypes.RTLD_GLOBAL), ("libonnxruntime_providers_cuda.so", ctypes.DEFAULT_MODE),
    ]
    assert probe_gpu_providers([TRT, CUDA, CPU], capi, lambda path, mode: None) == BOTH


def test_engine_asks_in_order_and_notes_the_fallback(argmax_model, monkeypatch, tmp_path):
    monkeypatch.setenv("LOUPE_TRT_CACHE", str(tmp_path / "trt"))
    monkeypatch.setattr(engine, "gpu_provider_status", lambda: NO_CUDA)
    eng = Engine(argmax_model, providers="cuda")
    assert eng.asked_providers == [CPU] and eng.providers == [CPU]
    assert eng.provider_note == "running on CPU; CUDA: libcudnn.so.9 not found (pip install 'loupe[gpu]')"
    assert f"note: {eng.provider_note}" in eng.describe()

    # the libraries "load" (mocked): TensorRT, CUDA, CPU are asked for; on a machine without a
    # usable GPU ONNX Runtime falls back to CPU and the note says the provider failed to start
    monkeypatch.setattr(engine, "gpu_provider_status", lambda: BOTH)
    eng = Engine(argmax_model, providers="auto")
    assert eng.asked_providers == [TRT, CUDA, CPU]
    assert eng.providers == eng.session.get_providers() and eng.providers[-1] == CPU
    if eng.providers[0] == CPU:
        assert eng.provider_note == "running on CPU; the GPU provider failed to start for this model"
    else:
        assert eng.provider_note == f"running on {engine.SHORT[eng.providers[0]]}"
