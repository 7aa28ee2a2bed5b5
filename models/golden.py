"""Helpers for checking a re-implementation against the official golden outputs.

The reference files (``tests/data/reference/<model>.json`` and ``.../golden/<model>.json``,
copied from the shared reference set) record what the official code returns for
deterministic weights and a deterministic input. This module implements, generically for
every model in that set:

- the **fill rule** (:func:`fill_state_dict`) and its verification (:func:`check_fill`),
- the **input rule** (:func:`golden_input`, :func:`golden_input_for`) and its verification
  (:func:`check_input`),
- the **tolerance checks** of an output against its golden entry (:func:`compare_output`):
  mean/std/min/max/sum, the 32 samples, segmentation argmax histograms and VQ code maps,
- :func:`run_golden` which chains all of the above for a model.

Every check returns a list of human-readable failure strings (empty = pass), so a test can
``assert not failures, "\\n".join(failures)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "INPUT_KINDS",
    "check_fill",
    "check_input",
    "compare_output",
    "compare_outputs",
    "fill_state_dict",
    "fill_values",
    "golden_input",
    "golden_input_for",
    "load_golden",
    "load_reference",
    "output_spread",
    "reference_dir",
    "run_golden",
    "sample_indices",
    "tensor_stats",
]

_MOD = 65521
#: Relative tolerance for the fill-rule float64 sums (the reference says "about 1e-9").
FILL_SUM_RTOL = 1e-9
#: Share of argmax pixels that may change class (0.1 %).
ARGMAX_CHANGE_FRACTION = 1e-3
#: Share of a code map by which the top-10 code counts may be off in total (0.1 %).
CODE_COUNT_FRACTION = 1e-3
N_SAMPLES = 32
#: With a measured spread (:func:`output_spread`), each float statistic and sample may be off
#: by ``rtol*|ref| + atol + SPREAD_FACTOR * spread``: the golden number (the official float32
#: run on the reference CPU) and ours are both rounding-perturbed copies of the exact model,
#: each at most ``spread`` away from it.
SPREAD_FACTOR = 2.0


# --------------------------------------------------------------------------------------
# reference files
# --------------------------------------------------------------------------------------
def reference_dir() -> Path:
    """Folder holding the reference JSON copies: ``$LOUPE_REFERENCE_DIR`` if set, else the
    repository's ``tests/data/reference``."""
    env = os.environ.get("LOUPE_REFERENCE_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "tests" / "data" / "reference"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"reference file not found: {path}")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def load_reference(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The state-dict reference ``<root>/<name>.json`` (layout, params, input/output facts)."""
    base = Path(root) if root is not None else reference_dir()
    return _read_json(base / f"{name.removesuffix('.json')}.json")


def load_golden(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The golden-output file ``<root>/golden/<name>.json``."""
    base = Path(root) if root is not None else reference_dir()
    return _read_json(base / "golden" / f"{name.removesuffix('.json')}.json")


def check_layout(state_dict: Mapping[str, torch.Tensor], reference: Mapping[str, Any]) -> list[str]:
    """Compare key order and shapes of ``state_dict`` with ``reference['state_dict']``."""
    failures: list[str] = []
    want = list(reference["state_dict"].items())
    got = [(k, list(v.shape)) for k, v in state_dict.items()]
    if len(got) != len(want):
        failures.append(f"state_dict has {len(got)} entries, reference {len(want)}")
    want_keys = {k for k, _ in want}
    got_keys = {k for k, _ in got}
    missing = [k for k, _ in want if k not in got_keys]
    extra = [k for k, _ in got if k not in want_keys]
    if missing:
        failures.append(f"missing {len(missing)} keys, first: {missing[:5]}")
    if extra:
        failures.append(f"unexpected {len(extra)} keys, first: {extra[:5]}")
    for pos, ((gk, _), (wk, _)) in enumerate(zip(got, want, strict=False)):
        if gk != wk:
            failures.append(f"order differs at position {pos}: got {gk!r}, reference {wk!r}")
            break
    for k, s in got:
        ref_shape = reference["state_dict"].get(k)
        if ref_shape is not None and list(ref_shape) != s:
            failures.append(f"{k}: shape {s}, reference {list(ref_shape)}")
    return failures


# --------------------------------------------------------------------------------------
# fill rule
# --------------------------------------------------------------------------------------
def fill_values(name: str, shape: Sequence[int], k: int, *, integer: bool = False) -> np.ndarray:
    """Float64 values of state-dict entry number ``k`` named ``name`` with ``shape``.

    ``h_i = (7 i^2 + (40503 + 10007 k) i + 9973 k) mod 65521`` in exact int64 arithmetic,
    ``s_i = 2 h_i / 65521 - 1``; then the first matching line of the rule decides the value.
    """
    shape = tuple(int(d) for d in shape)
    n = math.prod(shape)
    if integer:
        return np.zeros(shape, dtype=np.float64)
    # 7*i^2 stays below 2^63 for n < ~1.1e9; all entries here are far smaller.
    i = np.arange(n, dtype=np.int64)
    h = (7 * i * i + (40503 + 10007 * k) * i + 9973 * k) % _MOD
    s = 2.0 * h.astype(np.float64) / _MOD - 1.0
    ndim = len(shape)
    if name.endswith("running_var"):
        v = 1.0 + 0.5 * np.abs(s)
    elif ndim == 2 and (name.endswith(".embed") or name.endswith(".embed_avg")):
        v = 3.0 * s
    elif ndim >= 2:
        fan_in = n / shape[0]
        v = s * math.sqrt(6.0 / fan_in)
    elif ndim == 1 and name.endswith(".weight"):
        v = 1.0 + 0.1 * s
    else:
        v = 0.05 * s
    return v.reshape(shape)


def fill_state_dict(
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The reference fill of a model's ``state_dict()`` (buffers included, in its order).

    Floating entries become float32 tensors; integer entries (``num_batches_tracked``) are
    zeros of their own dtype. The result loads with ``load_state_dict(strict=True)``.
    """
    sd = (
        model_or_state_dict.state_dict()
        if isinstance(model_or_state_dict, nn.Module)
        else model_or_state_dict
    )
    out: dict[str, torch.Tensor] = {}
    for k, (name, t) in enumerate(sd.items()):
        integer = not (t.dtype.is_floating_point or t.dtype.is_complex)
        if integer:
            out[name] = torch.zeros(tuple(t.shape), dtype=t.dtype)
        else:
            v = fill_values(name, tuple(t.shape), k)
            out[name] = torch.from_numpy(v.astype(np.float32))
    return out


def _close(got: float, want: float, rtol: float, atol: float = 0.0) -> bool:
    return abs(got - want) <= rtol * abs(want) + atol


def check_fill(state_dict: Mapping[str, torch.Tensor], fill_check: Mapping[str, Any]) -> list[str]:
    """Verify a filled state dict against a golden file's ``fill_check`` block."""
    failures: list[str] = []
    entries = fill_check.get("entries")
    if entries is not None and len(state_dict) != entries:
        failures.append(f"fill_check: {len(state_dict)} entries, expected {entries}")
    total = 0.0
    total_abs = 0.0
    for t in state_dict.values():
        a = t.detach().cpu().numpy().astype(np.float64)
        total += float(a.sum())
        total_abs += float(np.abs(a).sum())
    for key, got in (("sum_of_all_values", total), ("sum_of_abs_values", total_abs)):
        want = fill_check.get(key)
        if want is not None and not _close(got, want, FILL_SUM_RTOL, 1e-9):
            failures.append(
                f"fill_check: {key} = {got!r}, expected {want!r} "
                f"(rel diff {abs(got - want) / max(abs(want), 1e-300):.3g})"
            )
    for name, first in fill_check.get("first4", {}).items():
        if name not in state_dict:
            failures.append(f"fill_check: entry {name!r} missing")
            continue
        got_vals = state_dict[name].detach().reshape(-1)[: len(first)].cpu().numpy()
        want_vals = np.asarray(first, dtype=np.float64).astype(np.float32)
        # float32 values; allow one float32 ulp in case the float64 rounding differs
        if got_vals.shape != want_vals.shape or not np.allclose(
            got_vals.astype(np.float64), want_vals.astype(np.float64), rtol=2.0**-23, atol=0.0
        ):
            failures.append(f"fill_check: {name} starts {got_vals.tolist()}, expected {first}")
    return failures


# --------------------------------------------------------------------------------------
# input rule
# --------------------------------------------------------------------------------------
def _unit_sin(j: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.sin(0.013 * j)


def _sin_0013(j: np.ndarray) -> np.ndarray:
    return np.sin(0.013 * j)


def _sin_07(j: np.ndarray) -> np.ndarray:
    return np.sin(0.7 * j)


#: Input kinds by their formula (whitespace-free); ``j`` is the flat C-order index.
INPUT_KINDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "0.5+0.5*sin(0.013*j)": _unit_sin,
    "sin(0.013*j)": _sin_0013,
    "sin(0.7*j)": _sin_07,
}
_KIND_ALIASES = {
    "image": "0.5+0.5*sin(0.013*j)",
    "signed": "sin(0.013*j)",
    "embedding": "sin(0.7*j)",
}


def _kind_key(kind: str) -> str:
    key = "".join(kind.split())
    key = _KIND_ALIASES.get(key, key)
    if key not in INPUT_KINDS:
        raise ValueError(
            f"unknown input kind {kind!r}; use one of {[*INPUT_KINDS, *_KIND_ALIASES]}"
        )
    return key


def golden_input(shape: Sequence[int], kind: str = "0.5+0.5*sin(0.013*j)") -> torch.Tensor:
    """The deterministic float32 input: the formula over the flat C-order index ``j``,
    computed in float64 and cast last. ``kind`` is one of :data:`INPUT_KINDS` (spaces are
    ignored) or an alias ``image`` / ``signed`` / ``embedding``."""
    fn = INPUT_KINDS[_kind_key(kind)]
    shape = tuple(int(d) for d in shape)
    j = np.arange(math.prod(shape), dtype=np.float64)
    return torch.from_numpy(fn(j).astype(np.float32).reshape(shape))


def input_kind_from_rule(rule: str) -> str:
    """The :data:`INPUT_KINDS` key named in a golden file's ``input.rule`` text."""
    flat = "".join(rule.split())
    # longest formula first: "0.5+0.5*sin(0.013*j)" contains "sin(0.013*j)"
    for key in sorted(INPUT_KINDS, key=len, reverse=True):
        if key in flat:
            return key
    raise ValueError(f"no known input formula in rule {rule!r}")


def golden_input_for(golden: Mapping[str, Any]) -> torch.Tensor:
    """The input described by a golden file's ``input`` block (shape and rule)."""
    inp = golden["input"]
    return golden_input(inp["shape"], input_kind_from_rule(inp["rule"]))


def sample_indices(numel: int, count: int = N_SAMPLES) -> list[int]:
    """``round(t*(numel-1)/(count-1))`` with halves rounded up, t = 0..count-1 (exact ints)."""
    if numel <= 0:
        return []
    d = count - 1
    return [(2 * t * (numel - 1) + d) // (2 * d) for t in range(count)]


def tensor_stats(t: torch.Tensor, indices: Sequence[int] | None = None) -> dict[str, Any]:
    """mean/std (population)/min/max/sum in float64 plus samples, as the golden files hold."""
    a = t.detach().cpu().numpy()
    flat = a.reshape(-1)
    a64 = flat.astype(np.float64)
    idx = list(indices) if indices is not None else sample_indices(flat.size)
    return {
        "shape": list(a.shape),
        "mean": float(a64.mean()),
        "std": float(a64.std()),
        "min": float(a64.min()),
        "max": float(a64.max()),
        "sum": float(a64.sum()),
        "sample_indices": idx,
        "samples": flat[idx].tolist(),
    }


def check_input(t: torch.Tensor, golden_input_block: Mapping[str, Any]) -> list[str]:
    """Compare an input tensor with a golden file's ``input`` block (shape, dtype, stats)."""
    failures: list[str] = []
    want_shape = golden_input_block.get("shape")
    if want_shape is not None and list(t.shape) != list(want_shape):
        return [f"input: shape {list(t.shape)}, expected {list(want_shape)}"]
    want_dtype = golden_input_block.get("dtype")
    if want_dtype is not None and str(t.dtype).removeprefix("torch.") != want_dtype:
        failures.append(f"input: dtype {t.dtype}, expected {want_dtype}")
    stats = golden_input_block.get("stats", {})
    got = tensor_stats(t)
    for key in ("mean", "std", "min", "max", "sum"):
        if key in stats and not _close(got[key], stats[key], 1e-9, 1e-12):
            failures.append(f"input: {key} = {got[key]!r}, expected {stats[key]!r}")
    if "samples" in stats:
        g = np.asarray(got["samples"], dtype=np.float32)
        w = np.asarray(stats["samples"], dtype=np.float64).astype(np.float32)
        if g.shape != w.shape or not np.array_equal(g, w):
            bad = int(np.sum(g != w)) if g.shape == w.shape else len(w)
            failures.append(f"input: {bad} of {len(w)} samples differ")
    return failures


# --------------------------------------------------------------------------------------
# output tolerance
# --------------------------------------------------------------------------------------
def _is_integer(dtype_name: str) -> bool:
    return dtype_name.startswith(("int", "uint")) or dtype_name == "bool"


def _compare_codes(a: np.ndarray, codes: Mapping[str, Any], label: str) -> list[str]:
    failures: list[str] = []
    flat = a.reshape(-1).astype(np.int64)
    first = codes.get("first16")
    if first is not None and flat[: len(first)].tolist() != list(first):
        failures.append(
            f"{label}: first16 codes {flat[: len(first)].tolist()}, expected {list(first)}"
        )
    top10 = codes.get("top10")
    if top10 is not None:
        values, counts = np.unique(flat, return_counts=True)
        got_count = dict(zip(values.tolist(), counts.tolist(), strict=True))
        off = sum(abs(got_count.get(int(c), 0) - int(n)) for c, n in top10)
        allowed = int(CODE_COUNT_FRACTION * flat.size)
        if off > allowed:
            failures.append(
                f"{label}: top10 code counts off by {off} in total (allowed {allowed}); "
                f"expected {top10}"
            )
    distinct = codes.get("distinct_codes")
    if distinct is not None:
        got_distinct = len(np.unique(flat))
        if got_distinct != distinct:
            logger.info("%s: %d distinct codes, reference %d", label, got_distinct, distinct)
    return failures


def _compare_argmax_hist(a: np.ndarray, hist: Sequence[int], label: str) -> list[str]:
    if a.ndim < 2:
        return [f"{label}: argmax histogram needs a class dimension, got shape {list(a.shape)}"]
    am = a.argmax(axis=1).reshape(-1)
    got = np.bincount(am, minlength=len(hist))
    if got.size > len(hist):
        return [f"{label}: argmax over {a.shape[1]} classes, histogram has {len(hist)}"]
    moved = (int(np.abs(got - np.asarray(hist, dtype=np.int64)).sum()) + 1) // 2
    allowed = int(ARGMAX_CHANGE_FRACTION * am.size)
    if moved > allowed:
        return [
            f"{label}: argmax histogram {got.tolist()} differs from {list(hist)} by at least "
            f"{moved} pixels (allowed {allowed} of {am.size})"
        ]
    return []


def output_spread(
    model: nn.Module,
    x: torch.Tensor,
    names: Sequence[str],
    forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The model's own spread at the golden input, per output and statistic: the largest
    ``|stat(run) - stat(float64 model at x)|`` over the float32 run at ``x`` and float64 runs
    at ``x +- SENSITIVITY_STEP * rms(x) * n`` for seeded Gaussian directions ``n`` (the same
    perturbations as the ONNX export check, :func:`loupe_models.exporters.onnx.reference_runs`).

    Why: a network whose output depends on *which* input of a max won (M-SegNet's
    max-unpooling) jumps where float32 rounding flips a near-tie, and rounding depends on the
    CPU (AVX2 or AVX-512 kernels, FMA, thread count). At the golden input M-SegNet UCF-QNRF
    moves by 2.5e-2 between float32 and float64 and by up to 1.1e-1 under the perturbations
    (peak 0.448), so a fixed 1e-3 on ``max`` and the samples holds on the reference CPU and
    ours but not necessarily on another. Statistics that do not sit on a tie (``mean``,
    ``std``, most samples) keep a spread of about 1e-5 and stay tight: a wrong weight still
    fails. Returns ``{name: {"mean": .., "std": .., "min": .., "max": .., "sum": ..,
    "samples": [..]}}`` (float outputs only).
    """
    from loupe_models.exporters.onnx import SENSITIVITY_DIRECTIONS, SENSITIVITY_STEP, float64_copy

    names = list(names)
    run = forward if forward is not None else (lambda m, t: m(t))
    model.eval()
    m64 = float64_copy(model)
    x64 = x.detach().cpu().to(torch.float64)
    with torch.no_grad():
        ref = _name_outputs(run(m64, x64), names)
        runs = [_name_outputs(run(model, x), names)]
        rms = float(x64.pow(2).mean().sqrt()) or 1.0
        g = torch.Generator().manual_seed(7919)
        for _ in range(SENSITIVITY_DIRECTIONS):
            n = torch.randn(x64.shape, generator=g, dtype=torch.float64) * (SENSITIVITY_STEP * rms)
            runs += [_name_outputs(run(m64, x64 + n), names), _name_outputs(run(m64, x64 - n), names)]
    spread: dict[str, dict[str, Any]] = {}
    for name, r in ref.items():
        if not r.is_floating_point():
            continue
        base = tensor_stats(r)
        out: dict[str, Any] = {k: 0.0 for k in ("mean", "std", "min", "max", "sum")}
        out["samples"] = [0.0] * len(base["samples"])
        for other in runs:
            st = tensor_stats(other[name].to(torch.float64))
            for k in ("mean", "std", "min", "max", "sum"):
                out[k] = max(out[k], abs(st[k] - base[k]))
            out["samples"] = [max(a, abs(float(u) - float(v))) for a, u, v in
                              zip(out["samples"], st["samples"], base["samples"], strict=True)]
        spread[name] = out
    return spread


def compare_output(
    tensor: torch.Tensor,
    golden_entry: Mapping[str, Any],
    name: str = "output",
    spread: Mapping[str, Any] | None = None,
) -> list[str]:
    """Check one output against its golden entry; returns failure strings (empty = pass).

    Float outputs: ``|got - ref| <= rtol*|ref| + atol`` for mean/std/min/max and each
    sample (at most ``max_sample_misses`` samples may miss), ``rtol*|ref| + sum_atol`` for
    the sum. ``argmax_class_histogram`` (segmentation): at most 0.1 % of pixels may change
    class. Integer code maps: samples and ``first16`` exact, ``top10`` counts off by at
    most 0.1 % of the map in total.

    ``spread`` (one output's entry of :func:`output_spread`) widens each float bound by
    ``SPREAD_FACTOR`` times the model's own spread of that statistic or sample at the input.
    """
    t = tensor.detach().cpu()
    want_shape = list(golden_entry["shape"])
    if list(t.shape) != want_shape:
        return [f"{name}: shape {list(t.shape)}, expected {want_shape}"]
    failures: list[str] = []
    a = t.numpy()
    flat = a.reshape(-1)
    idx = list(golden_entry.get("sample_indices", sample_indices(flat.size)))
    ref_samples = golden_entry.get("samples", [])
    dtype_name = str(golden_entry.get("dtype", str(t.dtype).removeprefix("torch.")))

    if _is_integer(dtype_name):
        got_s = flat[idx].astype(np.int64).tolist()
        if ref_samples and got_s != [int(v) for v in ref_samples]:
            misses = sum(g != int(w) for g, w in zip(got_s, ref_samples, strict=False))
            failures.append(f"{name}: {misses} of {len(ref_samples)} integer samples differ")
        if "codes" in golden_entry:
            failures += _compare_codes(a, golden_entry["codes"], name)
        return failures

    tol = golden_entry.get("tolerance", {})
    rtol = float(tol.get("rtol", 1e-4))
    ref_std = float(golden_entry.get("std", 0.0))
    atol = float(tol.get("atol", 1e-4 * ref_std))
    sum_atol = float(tol.get("sum_atol", atol * flat.size))
    max_misses = int(tol.get("max_sample_misses", 0))

    stats = tensor_stats(t, idx)
    sp = spread or {}

    def extra(key: str) -> float:
        return SPREAD_FACTOR * float(sp.get(key, 0.0))

    for key in ("mean", "std", "min", "max"):
        if key in golden_entry and not _close(stats[key], golden_entry[key], rtol,
                                              atol + extra(key)):
            failures.append(
                f"{name}: {key} = {stats[key]:.9g}, expected {golden_entry[key]:.9g} "
                f"(limit {rtol * abs(golden_entry[key]) + atol + extra(key):.3g})"
            )
    if "sum" in golden_entry and not _close(stats["sum"], golden_entry["sum"], rtol,
                                            sum_atol + extra("sum")):
        failures.append(
            f"{name}: sum = {stats['sum']:.9g}, expected {golden_entry['sum']:.9g} "
            f"(limit {rtol * abs(golden_entry['sum']) + sum_atol + extra('sum'):.3g})"
        )
    if ref_samples:
        sample_spread = list(sp.get("samples", [])) or [0.0] * len(ref_samples)
        if len(sample_spread) != len(ref_samples):
            raise ValueError(f"{name}: spread has {len(sample_spread)} samples, golden "
                             f"{len(ref_samples)}")
        misses = [
            (i, g, w)
            for i, g, w, s in zip(idx, stats["samples"], ref_samples, sample_spread, strict=False)
            if not _close(float(g), float(w), rtol, atol + SPREAD_FACTOR * float(s))
        ]
        if len(misses) > max_misses:
            shown = ", ".join(f"[{i}] {g:.7g} vs {w:.7g}" for i, g, w in misses[:4])
            failures.append(
                f"{name}: {len(misses)} of {len(ref_samples)} samples miss "
                f"(allowed {max_misses}): {shown}"
            )
    if "argmax_class_histogram" in golden_entry:
        failures += _compare_argmax_hist(a, golden_entry["argmax_class_histogram"], name)
    return failures


def compare_outputs(
    outputs: Mapping[str, torch.Tensor],
    golden: Mapping[str, Any],
    spread: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """:func:`compare_output` for every output named in ``golden['outputs']`` (with its entry
    of ``spread``, :func:`output_spread`, when given)."""
    failures: list[str] = []
    for name, entry in golden["outputs"].items():
        if name not in outputs:
            failures.append(f"{name}: not produced (got {sorted(outputs)})")
            continue
        failures += compare_output(outputs[name], entry, name,
                                   (spread or {}).get(name))
    return failures


def _name_outputs(result: Any, names: Iterable[str]) -> dict[str, torch.Tensor]:
    names = list(names)
    if isinstance(result, torch.Tensor):
        result = [result]
    if isinstance(result, Mapping):
        return dict(result)
    return dict(zip(names, result, strict=False))


def run_golden(
    model: nn.Module,
    golden: Mapping[str, Any] | str,
    forward: Callable[[nn.Module, torch.Tensor], Any] | None = None,
    spread: bool = False,
) -> list[str]:
    """Fill ``model`` by the rule, check ``fill_check``, build and check the input, run the
    model (eval, no_grad, float32) and compare every output (``spread``: with the bounds
    widened by the model's own spread at the input, :func:`output_spread`; for models with
    argmax-driven steps such as max-unpooling).

    ``forward(model, x)`` may return a tensor, a sequence (mapped to the golden output names
    in file order) or a name -> tensor mapping; default is ``model(x)``.
    """
    if isinstance(golden, str):
        golden = load_golden(golden)
    sd = fill_state_dict(model)
    failures = check_fill(sd, golden["fill_check"]) if "fill_check" in golden else []
    if failures:
        return failures
    model.load_state_dict(sd, strict=True)
    model.eval().float()
    x = golden_input_for(golden)
    failures = check_input(x, golden["input"])
    if failures:
        return failures
    with torch.no_grad():
        result = forward(model, x) if forward is not None else model(x)
    sp = output_spread(model, x, list(golden["outputs"]), forward) if spread else None
    return compare_outputs(_name_outputs(result, golden["outputs"]), golden, sp)
