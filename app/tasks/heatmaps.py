"""Heatmap decoding for top-down pose and landmark models (pure numpy, Qt-free).

A heatmap model outputs K maps (one per point), each peaking where its point is. Decoding finds
each map's maximum and refines it below one cell.

Coordinates
    ``decode_heatmaps`` answers in *heatmap-cell index* coordinates, the convention of the
    top-down pose pipelines (SimpleBaseline/HRNet's ``get_max_preds``, MMPose's
    ``get_heatmap_maximum``): the centre of cell (row i, column j) is at x = j, y = i. So a map
    of width w spans x in [-0.5, w - 0.5].

    ``heatmap_to_input`` maps those to model-input pixels in the convention
    ``Geometry.to_frame`` takes (continuous: input pixel k covers [k, k + 1), its centre at
    k + 0.5), as the model was trained:

    - ``align="msra"`` (default; SimpleBaseline, HRNet, MMPose's ``MSRAHeatmap``): cell index x
      is input pixel index ``x * iw / w`` (stride scaling), so continuous ``x * iw / w + 0.5``;
    - ``align="udp"`` (Unbiased Data Processing, MMPose's ``UDPHeatmap``): the first and last
      cells are the first and last input pixels, index ``x * (iw - 1) / (w - 1)``, continuous
      ``+ 0.5``;
    - ``align="cells"``: cell j covers the input block [j * s, (j + 1) * s), s = iw / w, so
      ``(x + 0.5) * iw / w`` (a heatmap that is a plain downsampling of the input).

Sub-pixel refinement (``refine``)
    - ``"taylor"`` (default; DARK, Zhang et al., CVPR 2020, without its blur): one Newton step
      on the log-heatmap at the maximum, offset = -H⁻¹ g from central differences over the 3 x 3
      neighbourhood. For a Gaussian peak the log is a quadratic, so the step lands on the centre
      exactly. The step is used when the maximum is inside the map (one cell from every edge),
      the neighbourhood is positive, and the Hessian is negative definite; it is clipped to
      ±0.5 cell on each axis. Otherwise the quarter offset below is used.
    - ``"quarter"`` (SimpleBaseline/HRNet): move 0.25 cell towards the larger neighbour on each
      axis that has both neighbours.
    - ``"none"``: the argmax cell.

Score: the map's value at its argmax cell (the peak value, as the pose pipelines report it).
Non-finite values never win the argmax; a map with no finite value decodes to (nan, nan, nan).
"""

from __future__ import annotations

import numpy as np

REFINEMENTS = ("taylor", "quarter", "none")
ALIGNMENTS = ("msra", "udp", "cells")
_EPS = 1e-10


def decode_heatmaps(maps: np.ndarray, refine: str = "taylor") -> np.ndarray:
    """(K, h, w) heatmaps -> (K, 3) float32 ``[x, y, score]`` in heatmap-cell index coordinates
    (cell (i, j) centred at x = j, y = i). See the module docstring for ``refine``."""
    if refine not in REFINEMENTS:
        raise ValueError(f"refine must be one of {', '.join(REFINEMENTS)}; got {refine!r}")
    m = np.asarray(maps)
    if m.ndim != 3:
        raise ValueError(f"heatmaps must be K x h x w, got shape {m.shape}")
    k, h, w = m.shape
    if h < 1 or w < 1:
        raise ValueError(f"heatmaps must have at least one cell, got shape {m.shape}")
    m = m.astype(np.float64, copy=False)
    finite = np.isfinite(m)
    flat = np.where(finite, m, -np.inf).reshape(k, h * w)
    idx = np.argmax(flat, axis=1)
    rows, cols = np.divmod(idx, w)
    ks = np.arange(k)
    score = m[ks, rows, cols]
    x = cols.astype(np.float64)
    y = rows.astype(np.float64)
    empty = ~finite.reshape(k, -1).any(axis=1)

    if refine != "none":
        done = np.zeros(k, bool)
        if refine == "taylor":
            done = _taylor(m, rows, cols, x, y)
        _quarter(m, rows, cols, x, y, ~done)

    out = np.stack([x, y, score], axis=1).astype(np.float32)
    out[empty] = np.nan
    return out


def _taylor(m: np.ndarray, rows: np.ndarray, cols: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One Newton step on log(map) where it is well defined; updates x, y in place; returns
    which maps were refined."""
    k, h, w = m.shape
    done = np.zeros(k, bool)
    inside = (rows >= 1) & (rows <= h - 2) & (cols >= 1) & (cols <= w - 2)
    sel = np.flatnonzero(inside)
    if sel.size == 0:
        return done
    r, c = rows[sel], cols[sel]
    dr = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1])
    dc = np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1])
    patch = m[sel[:, None], r[:, None] + dr, c[:, None] + dc]  # (n, 9)
    ok = np.isfinite(patch).all(axis=1) & (patch > 0).all(axis=1)
    lg = np.log(np.maximum(np.where(np.isfinite(patch), patch, _EPS), _EPS))
    p = lg.reshape(-1, 3, 3)
    gx = 0.5 * (p[:, 1, 2] - p[:, 1, 0])
    gy = 0.5 * (p[:, 2, 1] - p[:, 0, 1])
    hxx = p[:, 1, 2] - 2 * p[:, 1, 1] + p[:, 1, 0]
    hyy = p[:, 2, 1] - 2 * p[:, 1, 1] + p[:, 0, 1]
    hxy = 0.25 * (p[:, 2, 2] - p[:, 2, 0] - p[:, 0, 2] + p[:, 0, 0])
    det = hxx * hyy - hxy * hxy
    ok &= (hxx < 0) & (det > 0)
    safe = np.where(ok, det, 1.0)
    # offset = -H^-1 g, H = [[hxx, hxy], [hxy, hyy]]
    ox = -(hyy * gx - hxy * gy) / safe
    oy = -(-hxy * gx + hxx * gy) / safe
    ox = np.clip(ox, -0.5, 0.5)
    oy = np.clip(oy, -0.5, 0.5)
    good = sel[ok]
    x[good] += ox[ok]
    y[good] += oy[ok]
    done[good] = True
    return done


def _quarter(m: np.ndarray, rows: np.ndarray, cols: np.ndarray, x: np.ndarray, y: np.ndarray, which: np.ndarray) -> None:
    """Quarter-cell offset towards the larger neighbour, per axis with both neighbours."""
    _, h, w = m.shape
    for i in np.flatnonzero(which):
        r, c = rows[i], cols[i]
        if 1 <= c <= w - 2:
            d = m[i, r, c + 1] - m[i, r, c - 1]
            if np.isfinite(d):
                x[i] += 0.25 * np.sign(d)
        if 1 <= r <= h - 2:
            d = m[i, r + 1, c] - m[i, r - 1, c]
            if np.isfinite(d):
                y[i] += 0.25 * np.sign(d)


def heatmap_to_input(
    xy: np.ndarray, heatmap_hw: tuple[int, int], input_hw: tuple[int, int], align: str = "msra"
) -> np.ndarray:
    """Heatmap-cell index coordinates (``[..., 2]`` x, y, as ``decode_heatmaps`` gives) ->
    model-input pixel coordinates in ``Geometry.to_frame``'s convention (float32). See the
    module docstring for ``align``."""
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {', '.join(ALIGNMENTS)}; got {align!r}")
    a = np.asarray(xy, np.float64)
    if a.shape[-1] != 2:
        raise ValueError(f"points must end in (x, y), got shape {a.shape}")
    h, w = heatmap_hw
    ih, iw = input_hw
    if min(h, w, ih, iw) < 1:
        raise ValueError(f"sizes must be positive, got heatmap {heatmap_hw}, input {input_hw}")
    out = np.empty(a.shape, np.float64)
    if align == "msra":
        out[..., 0] = a[..., 0] * (iw / w) + 0.5
        out[..., 1] = a[..., 1] * (ih / h) + 0.5
    elif align == "udp":
        out[..., 0] = a[..., 0] * ((iw - 1) / max(w - 1, 1)) + 0.5
        out[..., 1] = a[..., 1] * ((ih - 1) / max(h - 1, 1)) + 0.5
    else:
        out[..., 0] = (a[..., 0] + 0.5) * (iw / w)
        out[..., 1] = (a[..., 1] + 0.5) * (ih / h)
    return out.astype(np.float32)
