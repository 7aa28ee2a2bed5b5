"""What Loupe runs on: versions, DICOM decoders, ONNX Runtime providers, GPU (Qt-free).

``loupe sysinfo`` prints :func:`format_system_info`; Help → About shows the same text with a
Copy button so it can be pasted into a bug report. Every probe is guarded: a missing or broken
package reads "not installed" or "error: ..." instead of raising. PySide6 is imported only
inside :func:`_qt_versions`, so this module imports without Qt.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable

logger = logging.getLogger(__name__)

NOT_INSTALLED = "not installed"
#: DICOM plugin packages: (label, import name, distribution name).
DICOM_PLUGIN_PACKAGES = (
    ("pylibjpeg", "pylibjpeg", "pylibjpeg"),
    ("libjpeg", "libjpeg", "pylibjpeg-libjpeg"),
    ("openjpeg", "openjpeg", "pylibjpeg-openjpeg"),
    ("rle", "rle", "pylibjpeg-rle"),
    ("gdcm", "gdcm", "python-gdcm"),
    ("pyjpegls", "jpeg_ls", "pyjpegls"),
    ("PIL", "PIL", "pillow"),
)
#: The keys of :func:`system_info`, in display order.
KEYS = (
    "Loupe",
    "Python",
    "Platform",
    "Qt",
    "PySide6",
    "pyqtgraph",
    "NumPy",
    "OpenCV",
    "PyAV",
    "FFmpeg",
    "pydicom",
    "DICOM plugins",
    "DICOM decoders",
    "ONNX Runtime",
    "ORT providers (available)",
    "ORT providers (load here)",
    "ORT threads",
    "TensorRT cache",
    "GPU",
    "torch (fitting)",
)


def _guard(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except ModuleNotFoundError:
        return NOT_INSTALLED
    except Exception as e:  # never break the report; a broken install (ImportError) shows why
        logger.debug("sysinfo probe %s failed", getattr(fn, "__name__", fn), exc_info=True)
        return f"error: {type(e).__name__}: {e}"


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module_version(module: str, dist: str | None = None) -> str:
    """``module.__version__`` after importing it, else the distribution's version."""
    mod = importlib.import_module(module)
    version = getattr(mod, "__version__", None) or (_dist_version(dist) if dist else None)
    return str(version) if version else "installed (version unknown)"


def _loupe() -> str:
    from loupe import __version__

    return __version__


def _python() -> str:
    return f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"


def _platform() -> str:
    text = platform.platform()
    if getattr(sys, "frozen", False):
        text += " (app bundle)"
    return text


def _qt_versions() -> tuple[str, str]:
    """(Qt runtime version, PySide6 version); PySide6 is imported here only."""
    try:
        import PySide6
        from PySide6 import QtCore
    except ImportError:
        return NOT_INSTALLED, NOT_INSTALLED
    return QtCore.qVersion(), PySide6.__version__


def _pyav() -> str:
    return _module_version("av", "av")


def _ffmpeg() -> str:
    import av

    version = getattr(av, "ffmpeg_version_info", None)
    libs = getattr(av, "library_versions", {}) or {}
    codec = libs.get("libavcodec")
    parts = [str(version)] if version else []
    if codec:
        parts.append("libavcodec " + ".".join(str(v) for v in codec))
    return ", ".join(parts) or "unknown"


def _dicom_plugins() -> str:
    out = []
    for label, module, dist in DICOM_PLUGIN_PACKAGES:
        if importlib.util.find_spec(module) is None:
            out.append(f"{label} no")
            continue
        version = _dist_version(dist)
        if version is None:
            try:
                version = getattr(importlib.import_module(module), "__version__", None)
            except Exception:
                version = None
        out.append(f"{label} {version or 'yes'}")
    # pylibjpeg finds its decoders through package entry points; without them (a bundle that
    # lost the plugins' metadata) pydicom thinks JPEG works and then fails on the first frame.
    try:
        from pylibjpeg.utils import get_pixel_data_decoders

        found = sorted({pkg for per_uid in get_pixel_data_decoders(version=2).values() for pkg in per_uid})
        out.append(f"pylibjpeg entry points: {', '.join(found) or 'none'}")
    except ImportError:
        pass
    return "; ".join(out)


#: Compressed DICOM transfer syntaxes, with short labels for the report.
DICOM_SYNTAXES = (
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended"),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless"),
    ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    ("1.2.840.10008.1.2.4.201", "HTJ2K Lossless"),
    ("1.2.840.10008.1.2.4.202", "HTJ2K Lossless RPCL"),
    ("1.2.840.10008.1.2.4.203", "HTJ2K"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
)


def _dicom_decoders() -> str:
    """Compressed transfer syntaxes and the pydicom plugins that decode them here."""
    from pydicom.pixels.decoders.base import get_decoder

    try:  # pydicom's pylibjpeg plugin decodes through pylibjpeg's entry points: check them too
        from pylibjpeg.utils import get_pixel_data_decoders

        via_pylibjpeg = set(get_pixel_data_decoders(version=2))
    except ImportError:
        via_pylibjpeg = set()
    ok, missing = [], []
    for uid, label in DICOM_SYNTAXES:
        try:
            plugins = list(get_decoder(uid).available_plugins)
        except Exception:  # pydicom raises NotImplementedError for syntaxes it has no decoder for
            plugins = []
        if "pylibjpeg" in plugins and uid not in via_pylibjpeg:
            plugins.remove("pylibjpeg")
        if plugins:
            ok.append(f"{label} [{', '.join(plugins)}]")
        else:
            missing.append(label)
    text = "; ".join(["uncompressed", *ok])
    if missing:
        text += "; NO decoder for: " + ", ".join(missing)
    return text


def _onnxruntime() -> str:
    import onnxruntime as ort

    text = ort.__version__
    package = getattr(ort, "package_name", None)
    cuda = getattr(ort, "cuda_version", None)
    extra = [p for p in (package, f"built for CUDA {cuda}" if cuda else None) if p]
    return text + (f" ({', '.join(extra)})" if extra else "")


def _ort_available() -> str:
    import onnxruntime as ort

    return ", ".join(ort.get_available_providers())


def _ort_loadable() -> str:
    """Which providers can actually start here (the engine's own check), with the reason if not."""
    from loupe.inference.engine import SHORT, gpu_provider_status

    parts = []
    for prov, reason in gpu_provider_status().items():
        parts.append(f"{SHORT.get(prov, prov)}: {'yes' if reason is None else 'no, ' + reason}")
    parts.append("CPU: yes")
    return "; ".join(parts)


def _ort_threads() -> str:
    from loupe.inference.engine import THREADS_ENV, default_threads

    n, why = default_threads()
    import os

    return (f"{n} intra-op per model ({why}; {os.cpu_count()} logical CPUs), 1 inter-op, no spinning; "
            f"set ${THREADS_ENV} or loupe analyze --threads to change")


def _trt_cache() -> str:
    from loupe.inference.engine import trt_cache_dir

    return str(trt_cache_dir())


def gpu_name(timeout: float = 3.0) -> str:
    """GPU name(s) from ``nvidia-smi -L``, or 'none found (...)'."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "none found (nvidia-smi not on PATH)"
    try:
        r = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"none found (nvidia-smi did not answer in {timeout:g} s)"
    except OSError as e:
        return f"none found (nvidia-smi: {e.strerror or e})"
    names = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("GPU"):
            names.append(line.split(" (UUID")[0])
    if names:
        return "; ".join(names)
    err = (r.stderr or r.stdout).strip().splitlines()
    return "none found" + (f" (nvidia-smi: {err[0][:120]})" if err else "")


def _torch() -> str:
    # never import torch here: it takes seconds, and the app bundle leaves it out on purpose
    version = _dist_version("torch")
    if version:
        return version
    if getattr(sys, "frozen", False):
        return "not in the app bundle (fitting needs the pip-installed Loupe: pip install 'loupe[fit]')"
    return f"{NOT_INSTALLED} (fitting needs it: pip install 'loupe[fit]')"


def system_info() -> dict[str, str]:
    """One line of text per item of :data:`KEYS`; never raises."""
    qt, pyside = _qt_pair()
    probes: dict[str, Callable[[], str]] = {
        "Loupe": _loupe,
        "Python": _python,
        "Platform": _platform,
        "Qt": lambda: qt,
        "PySide6": lambda: pyside,
        "pyqtgraph": lambda: _module_version("pyqtgraph", "pyqtgraph"),
        "NumPy": lambda: _module_version("numpy", "numpy"),
        "OpenCV": lambda: _module_version("cv2", "opencv-python-headless"),
        "PyAV": _pyav,
        "FFmpeg": _ffmpeg,
        "pydicom": lambda: _module_version("pydicom", "pydicom"),
        "DICOM plugins": _dicom_plugins,
        "DICOM decoders": _dicom_decoders,
        "ONNX Runtime": _onnxruntime,
        "ORT providers (available)": _ort_available,
        "ORT providers (load here)": _ort_loadable,
        "ORT threads": _ort_threads,
        "TensorRT cache": _trt_cache,
        "GPU": gpu_name,
        "torch (fitting)": _torch,
    }
    return {key: _guard(probes[key]) for key in KEYS}


def _qt_pair() -> tuple[str, str]:
    try:
        return _qt_versions()
    except Exception as e:
        msg = f"error: {type(e).__name__}: {e}"
        return msg, msg


def format_system_info(info: dict[str, str] | None = None) -> str:
    """The report as aligned ``key: value`` lines (what ``loupe sysinfo`` prints)."""
    info = system_info() if info is None else info
    width = max((len(k) for k in info), default=0)
    return "\n".join(f"{k + ':':{width + 1}} {v}" for k, v in info.items())
