"""`loupe sysinfo`, `loupe --version` and the TensorRT engine cache folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import loupe
from loupe import sysinfo
from loupe.cli import main
from loupe.inference import engine


@pytest.fixture(scope="module")
def info() -> dict[str, str]:
    return sysinfo.system_info()


def test_system_info_has_every_key(info):
    assert list(info) == list(sysinfo.KEYS)
    for key in ("Loupe", "Python", "Platform", "Qt", "PySide6", "pyqtgraph", "NumPy", "OpenCV", "PyAV",
                "FFmpeg", "pydicom", "DICOM decoders", "ONNX Runtime", "ORT providers (available)",
                "ORT providers (load here)", "GPU"):
        assert key in info
        assert info[key] and not info[key].startswith("error"), (key, info[key])
    assert info["Loupe"] == loupe.__version__
    assert all(isinstance(v, str) and "\n" not in v for v in info.values())


def test_system_info_values(info):
    import onnxruntime as ort
    import pydicom
    import PySide6

    assert info["PySide6"] == PySide6.__version__
    assert info["pydicom"] == pydicom.__version__
    assert info["ONNX Runtime"].startswith(ort.__version__)
    assert "CPUExecutionProvider" in info["ORT providers (available)"]
    assert "CPU: yes" in info["ORT providers (load here)"]
    assert "TensorRT:" in info["ORT providers (load here)"] and "CUDA:" in info["ORT providers (load here)"]
    # pylibjpeg + libjpeg + openjpeg are dependencies: JPEG and JPEG 2000 DICOMs must decode
    assert "JPEG Baseline [" in info["DICOM decoders"]
    assert "JPEG 2000 [" in info["DICOM decoders"]
    assert "NO decoder for: JPEG Baseline" not in info["DICOM decoders"]
    assert "libjpeg" in info["DICOM plugins"] and "openjpeg" in info["DICOM plugins"]
    assert info["GPU"]  # a name, or 'none found (...)'


def test_loadable_providers_agree_with_the_engine(info):
    status = engine.gpu_provider_status()
    for prov, reason in status.items():
        short = engine.SHORT[prov]
        expected = f"{short}: yes" if reason is None else f"{short}: no, {reason}"
        assert expected in info["ORT providers (load here)"]


def test_format_system_info_is_one_aligned_line_per_key():
    text = sysinfo.format_system_info({"Loupe": "0.1.0", "ORT providers (available)": "CPU"})
    assert text.splitlines() == ["Loupe:                     0.1.0", "ORT providers (available): CPU"]


def test_a_failing_probe_reads_error_not_raises(monkeypatch):
    def boom() -> str:
        raise RuntimeError("broken")

    monkeypatch.setattr(sysinfo, "_ffmpeg", boom)
    monkeypatch.setattr(sysinfo, "_onnxruntime", lambda: (_ for _ in ()).throw(ModuleNotFoundError("x")))
    monkeypatch.setattr(sysinfo, "_pyav", lambda: (_ for _ in ()).throw(ImportError("libavcodec.so.62: cannot open")))
    info = sysinfo.system_info()
    assert info["FFmpeg"] == "error: RuntimeError: broken"
    assert info["ONNX Runtime"] == sysinfo.NOT_INSTALLED
    assert info["PyAV"] == "error: ImportError: libavcodec.so.62: cannot open"  # broken, not missing


def test_torch_is_never_imported_and_named_for_the_bundle(monkeypatch):
    monkeypatch.setattr(sysinfo, "_dist_version", lambda dist: None)
    assert sysinfo._torch().startswith("not installed (fitting needs it: pip install 'loupe[fit]')")
    monkeypatch.setattr(sysinfo.sys, "frozen", True, raising=False)
    assert sysinfo._torch().startswith("not in the app bundle (fitting needs the pip-installed Loupe")


def test_gpu_name_without_nvidia_smi(monkeypatch):
    monkeypatch.setattr(sysinfo.shutil, "which", lambda name: None)
    assert sysinfo.gpu_name() == "none found (nvidia-smi not on PATH)"


def test_gpu_name_parses_nvidia_smi(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1234)'\necho 'GPU 1: NVIDIA L4 (UUID: GPU-5)'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sysinfo.shutil, "which", lambda name: str(fake))
    assert sysinfo.gpu_name() == "GPU 0: NVIDIA H200; GPU 1: NVIDIA L4"


def test_gpu_name_times_out(monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nexec sleep 10\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sysinfo.shutil, "which", lambda name: str(fake))
    assert sysinfo.gpu_name(timeout=0.2).startswith("none found (nvidia-smi did not answer")


def test_sysinfo_imports_and_runs_without_qt_or_torch():
    """The module is Qt-free: with PySide6 blocked it still reports, Qt reads 'not installed'."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph', 'torch'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from loupe.sysinfo import system_info\n"
        "info = system_info()\n"
        "assert info['Qt'] == info['PySide6'] == 'not installed', info\n"
        "assert 'torch' not in sys.modules and 'PySide6' not in sys.modules\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_system_info_does_not_import_torch():
    code = "import sys\nfrom loupe.sysinfo import system_info\nsystem_info()\nprint('torch' in sys.modules)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


# --- command line ----------------------------------------------------------------------------------


def test_version_flag(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"loupe {loupe.__version__}\n"
    assert loupe.__version__ == "0.1.0"


def test_sysinfo_command_prints_the_report(capsys):
    assert main(["sysinfo"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("Loupe:") and lines[0].endswith(loupe.__version__)
    assert [line.split(":", 1)[0] for line in lines] == list(sysinfo.KEYS)


def test_sysinfo_command_json(capsys):
    assert main(["sysinfo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == list(sysinfo.KEYS)


def test_sysinfo_command_rejects_unknown_options(capsys):
    assert main(["sysinfo", "--bogus"]) == 2


# --- TensorRT engine cache -------------------------------------------------------------------------


def test_trt_cache_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("LOUPE_TRT_CACHE", str(tmp_path / "engines"))
    assert engine.trt_cache_dir() == tmp_path / "engines"


def test_trt_cache_defaults_to_the_user_cache_dir(monkeypatch, tmp_path):
    from platformdirs import user_cache_dir

    monkeypatch.delenv("LOUPE_TRT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got = engine.trt_cache_dir()
    assert got == Path(user_cache_dir("loupe", appauthor=False)) / "trt"
    if sys.platform.startswith("linux"):
        assert got == tmp_path / "xdg" / "loupe" / "trt"
    assert not got.exists()  # only created when TensorRT is used


def test_trt_cache_created_only_for_tensorrt(monkeypatch, tmp_path):
    cache = tmp_path / "trt-cache"
    monkeypatch.setenv("LOUPE_TRT_CACHE", str(cache))
    opts = engine._tensorrt_options()
    assert cache.is_dir()
    assert opts["trt_engine_cache_enable"] is True and opts["trt_engine_cache_path"] == str(cache)


def test_trt_cache_unwritable_disables_the_cache(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LOUPE_TRT_CACHE", str(blocker / "trt"))
    opts = engine._tensorrt_options()
    assert "trt_engine_cache_enable" not in opts and opts["trt_fp16_enable"] is True


def test_cpu_engine_creates_no_trt_cache(monkeypatch, tmp_path, argmax_model):
    cache = tmp_path / "never"
    monkeypatch.setenv("LOUPE_TRT_CACHE", str(cache))
    engine.Engine(argmax_model, providers="cpu")
    assert not cache.exists()
