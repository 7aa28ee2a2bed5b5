"""Multi-object tracking of detection-like results: IDs that follow objects across frames (Qt-free).

A ByteTrack-style tracker (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every
Detection Box", ECCV 2022), written here from the paper's description:

- each track holds a Kalman filter on its box (centre x, centre y, width, height and their
  velocities; constant velocity; noise proportional to the box size, as SORT / DeepSORT do);
- every frame the tracks are predicted forward, then associated in two stages by IoU: the
  high-score detections (score >= ``high_score``) with every track, the tracked and the lost ones;
  then the low-score detections (``low_score`` <= score < ``high_score``: often an object partly
  hidden) with the tracks left that were tracked on the previous frame;
- a track seen on one frame only is tentative: it gets its ID when a detection matches it on the
  next frame (on the first frame after a reset every track starts confirmed), so a one-frame false
  positive takes no ID; high-score detections left over (score >= ``new_score``) start tentative
  tracks;
- a track with no detection is lost; it is kept ``buffer`` frames (its box predicted on) and takes
  its ID back when a detection matches it again, then dropped.

Matching is class-aware: a track keeps the class of its first detection and only detections of
that class match it. Assignments are optimal (the Hungarian method on the IoU cost, leaving a pair
unmatched rather than accept an IoU below the stage's minimum, as ``lap.lapjv`` with a cost limit
does), solved separately on each group of boxes that overlap, so hundreds of boxes cost little.

IDs start at 1; 0 means "not tracked" (a low-score detection no track took, or a tentative track).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Tracker", "TrackerSettings", "assign", "box_iou", "settings_for"]

_STD_POS = 1.0 / 20  # position noise per unit of box size (SORT / DeepSORT's weights)
_STD_VEL = 1.0 / 160


@dataclass(frozen=True)
class TrackerSettings:
    high_score: float = 0.5  # first-stage detections
    low_score: float = 0.1  # second-stage detections are in [low_score, high_score)
    new_score: float = 0.6  # a leftover detection at least this good starts a track
    high_iou: float = 0.2  # minimum IoU of the first stage (ByteTrack's match_thresh 0.8 as a distance)
    low_iou: float = 0.5  # minimum IoU of the second stage
    tentative_iou: float = 0.3  # minimum IoU for a tentative track's second detection
    buffer: int = 30  # frames a lost track is kept


def settings_for(score_threshold: float) -> TrackerSettings:
    """ByteTrack's thresholds fitted to what the user sees: the first stage starts at the task's
    score threshold (boxes below it never reach the tracker), capped at ByteTrack's 0.5, and a
    new track needs 0.1 more (capped at its 0.6). A model whose boxes all score 0.3-0.45 still
    gets IDs at a 0.25 threshold; at 0.5 or above these are ByteTrack's own values."""
    high = min(TrackerSettings.high_score, max(float(score_threshold), TrackerSettings.low_score))
    return replace(TrackerSettings(), high_score=high, new_score=min(TrackerSettings.new_score, high + 0.1))


# --- geometry and assignment -------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x1, y1, x2, y2 boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None, out=iw) * np.clip(ih, 0, None, out=ih)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _hungarian(cost: np.ndarray) -> np.ndarray:
    """Optimal assignment of a (n, m) cost matrix with n <= m: the column of each row
    (shortest augmenting paths with potentials, one row at a time)."""
    n, m = cost.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)  # p[j]: the row (1-based) holding column j; column 0 is a sentinel
    way = np.zeros(m + 1, np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used
            free[0] = False
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free[1:] & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv, np.inf)
            j1 = int(np.argmin(cand))
            delta = cand[j1]
            u[p[used]] += delta
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = int(way[j0])
            p[j0] = p[j1]
            j0 = j1
    col = np.empty(n, np.int64)
    col[p[1:][p[1:] > 0] - 1] = np.flatnonzero(p[1:] > 0)
    return col


def _groups(edges: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Connected groups (rows, columns) of the bipartite graph ``edges`` (n, m) bool."""
    n = edges.shape[0]
    rr, cc = np.nonzero(edges)
    parent = list(range(n + edges.shape[1]))  # rows, then columns (union-find)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r, c in zip(rr.tolist(), (cc + n).tolist()):
        a, b = find(r), find(c)
        if a != b:
            parent[a] = b
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for r in sorted(set(rr.tolist())):
        groups.setdefault(find(r), ([], []))[0].append(r)
    for c in sorted(set(cc.tolist())):
        groups[find(c + n)][1].append(c)
    return [(np.array(r, np.int64), np.array(c, np.int64)) for r, c in groups.values()]


def assign(cost: np.ndarray, limit: float) -> list[tuple[int, int]]:
    """The (row, column) pairs minimising the total cost, where leaving a row and a column
    unmatched costs ``limit`` (so no pair costs ``limit`` or more): the assignment ``lap.lapjv``
    gives with ``extend_cost=True, cost_limit=limit``. Solved per group of rows and columns
    joined by pairs under the limit."""
    cost = np.asarray(cost, np.float64)
    if cost.size == 0:
        return []
    edges = cost < limit
    pairs: list[tuple[int, int]] = []
    for rows, cols in _groups(edges):
        if len(rows) == 1 and len(cols) == 1:
            pairs.append((int(rows[0]), int(cols[0])))
            continue
        sub = np.minimum(cost[np.ix_(rows, cols)], limit)  # a pair at the limit = both unmatched
        flip = len(rows) > len(cols)
        col = _hungarian(sub.T if flip else sub)
        for a, b in enumerate(col.tolist()):
            r, c = (b, a) if flip else (a, b)
            if sub[r, c] < limit:
                pairs.append((int(rows[r]), int(cols[c])))
    return sorted(pairs)


# --- Kalman filter on boxes (batched) ----------------------------------------------------------
def _xyxy_to_z(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64).reshape(-1, 4)
    wh = b[:, 2:] - b[:, :2]
    return np.concatenate([b[:, :2] + wh / 2, wh], axis=1)


def _z_to_xyxy(z: np.ndarray) -> np.ndarray:
    wh = np.clip(z[:, 2:4], 1e-3, None)
    return np.concatenate([z[:, :2] - wh / 2, z[:, :2] + wh / 2], axis=1)


_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def _size4(z: np.ndarray) -> np.ndarray:
    """(N, 4) w, h, w, h of states or measurements (the noise scales)."""
    wh = np.clip(z[:, 2:4], 1.0, None)
    return np.concatenate([wh, wh], axis=1)


def _kf_init(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = _size4(z)
    mean = np.concatenate([z, np.zeros_like(z)], axis=1)
    std = np.concatenate([2 * _STD_POS * s, 10 * _STD_VEL * s], axis=1)
    return mean, np.einsum("ni,ij->nij", std**2, np.eye(8))


def _kf_predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = _size4(mean)
    q = np.concatenate([_STD_POS * s, _STD_VEL * s], axis=1) ** 2
    mean = mean @ _F.T
    cov = _F @ cov @ _F.T + np.einsum("ni,ij->nij", q, np.eye(8))
    return mean, cov


def _kf_update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = (_STD_POS * _size4(mean)) ** 2
    s = _H @ cov @ _H.T + np.einsum("ni,ij->nij", r, np.eye(4))  # (N, 4, 4)
    pht = cov @ _H.T  # (N, 8, 4)
    gain = np.linalg.solve(s, pht.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1
    mean = mean + np.einsum("nij,nj->ni", gain, z - mean[:, :4])
    cov = cov - gain @ s @ gain.transpose(0, 2, 1)
    return mean, cov


# --- the tracker --------------------------------------------------------------------------------
@dataclass
class _Track:
    mean: np.ndarray  # (8,)
    cov: np.ndarray  # (8, 8)
    cls: int
    score: float
    id: int = 0  # 0 while tentative
    tracked: bool = True  # False: lost
    last_frame: int = 0  # the tracker's frame count when a detection last matched it

    def copy(self) -> _Track:
        return _Track(self.mean.copy(), self.cov.copy(), self.cls, self.score, self.id, self.tracked,
                      self.last_frame)


@dataclass
class Tracker:
    """``update(boxes, scores, classes, steps)`` once per frame, in frame order: the track ID of
    each detection (0: not tracked). ``steps`` > 1 says frames were skipped in between (the
    tracks are predicted over them and lost ones age by them)."""

    settings: TrackerSettings = field(default_factory=TrackerSettings)
    tracks: list[_Track] = field(default_factory=list)
    frame: int = 0
    next_id: int = 1

    def copy(self) -> Tracker:
        return Tracker(self.settings, [t.copy() for t in self.tracks], self.frame, self.next_id)

    def reset(self) -> None:
        self.tracks, self.frame, self.next_id = [], 0, 1

    def predicted_boxes(self) -> np.ndarray:
        """(len(tracks), 4) x1, y1, x2, y2 of every track's current state."""
        if not self.tracks:
            return np.zeros((0, 4), np.float64)
        return _z_to_xyxy(np.stack([t.mean for t in self.tracks]))

    def update(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, steps: int = 1) -> np.ndarray:
        cfg = self.settings
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        classes = np.asarray(classes, np.int64).reshape(-1)
        first = self.frame == 0
        self.frame += max(int(steps), 1)
        self._predict(max(int(steps), 1))
        ids = np.zeros(len(scores), np.int64)
        tracks = self.tracks
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        owner: dict[int, _Track] = {}  # detection -> the track it went to
        z = _xyxy_to_z(boxes)

        def associate(det: np.ndarray, cand: list[int], min_iou: float) -> None:
            if not len(det) or not cand:
                return
            pred = _z_to_xyxy(np.stack([tracks[k].mean for k in cand]))
            iou = box_iou(pred, boxes[det])
            iou[np.array([tracks[k].cls for k in cand])[:, None] != classes[det][None, :]] = 0.0
            pairs = assign(1.0 - iou, 1.0 - min_iou)
            if not pairs:
                return
            hit = [tracks[cand[r]] for r, _c in pairs]
            ds = [int(det[c]) for _r, c in pairs]
            mean, cov = _kf_update(np.stack([t.mean for t in hit]), np.stack([t.cov for t in hit]), z[ds])
            for j, (t, d) in enumerate(zip(hit, ds)):
                t.mean, t.cov = mean[j], cov[j]
                t.score, t.tracked, t.last_frame = float(scores[d]), True, self.frame
                owner[d] = t
            matched_t.update(cand[r] for r, _c in pairs)
            matched_d.update(ds)

        high = np.flatnonzero(scores >= cfg.high_score)
        low = np.flatnonzero((scores >= cfg.low_score) & (scores < cfg.high_score))
        was_tracked = [k for k, t in enumerate(tracks) if t.tracked]
        # 1. high-score detections with the confirmed tracks, tracked or lost
        associate(high, [k for k, t in enumerate(tracks) if t.id], cfg.high_iou)
        # 2. low-score detections with the confirmed tracks tracked last frame and still unmatched
        associate(low, [k for k in was_tracked if tracks[k].id and k not in matched_t], cfg.low_iou)
        # 3. tentative tracks (born last frame) with the high-score detections left
        left = np.array([d for d in high if d not in matched_d], np.int64)
        tentative = [k for k, t in enumerate(tracks) if not t.id]
        associate(left, tentative, cfg.tentative_iou)
        for k in tentative:
            if k in matched_t:
                tracks[k].id = self._new_id()
        keep: list[_Track] = []
        for k, t in enumerate(tracks):
            if k in matched_t:
                keep.append(t)
            elif t.id and self.frame - t.last_frame <= cfg.buffer:  # lost (a tentative one goes)
                t.tracked = False
                keep.append(t)
        # 4. new tracks from the high-score detections no track took
        new = [d for d in high if d not in matched_d and scores[d] >= cfg.new_score]
        if new:
            mean, cov = _kf_init(z[new])
            for j, d in enumerate(new):
                t = _Track(mean[j], cov[j], int(classes[d]), float(scores[d]), last_frame=self.frame)
                if first:
                    t.id = self._new_id()
                keep.append(t)
                owner[int(d)] = t
        self.tracks = keep
        for d, t in owner.items():
            ids[d] = t.id
        return ids

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _predict(self, steps: int) -> None:
        if not self.tracks:
            return
        mean = np.stack([t.mean for t in self.tracks])
        cov = np.stack([t.cov for t in self.tracks])
        lost = np.array([not t.tracked for t in self.tracks])
        mean[lost, 6:8] = 0.0  # a lost box keeps its size
        for _ in range(steps):
            mean, cov = _kf_predict(mean, cov)
        for k, t in enumerate(self.tracks):
            t.mean, t.cov = mean[k], cov[k]
