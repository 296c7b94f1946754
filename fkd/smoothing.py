"""Keypoints that hold still on a webcam: the One-Euro filter and a small per-face tracker.

The One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) is a low-pass filter whose cut-off rises
with speed: a still face gets heavy smoothing (no jitter), a moving face light smoothing (little
lag). `PointSmoother` keeps one filter per face from frame to frame, matching faces by box
centre, and works in units of the face size so the same settings suit near and far faces.

    sm = PointSmoother(min_cutoff=1.0, beta=0.5)
    for t, faces in stream:                    # t in seconds, faces with .box and .keypoints
        smoothed = sm(faces, t)                # new Face-like objects, keypoints filtered
No Gradio and no global state: the app keeps one `PointSmoother` per browser session.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter on arrays of any (fixed) shape; each element is filtered on its own.

    min_cutoff (Hz): smoothing of a still signal (lower = smoother, more lag when it starts moving).
    beta: how fast the cut-off grows with speed (per unit of the signal per second).
    d_cutoff (Hz): smoothing of the speed estimate itself.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0:
            raise ValueError("cut-off frequencies must be positive")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x = self.dx = self.t = None

    def reset(self) -> None:
        self.x = self.dx = self.t = None

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.x.shape != x.shape:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self.t
        if dt <= 0:  # same or out-of-order timestamp: nothing to integrate over
            return self.x.copy()
        dx = (x - self.x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        a = _alpha(self.min_cutoff + self.beta * np.abs(self.dx), dt)
        self.x = a * x + (1 - a) * self.x
        self.t = float(t)
        return self.x.copy()


def strength_to_cutoff(strength: float) -> float:
    """UI slider 0..1 → min_cutoff in Hz on a log scale: 0 = 30 Hz (≈ off at webcam rates), 1 = 0.1 Hz."""
    s = float(np.clip(strength, 0.0, 1.0))
    return float(30.0 * (0.1 / 30.0) ** s)


class PointSmoother:
    """One One-Euro filter per tracked face; faces are matched to tracks by nearest box centre.

    Points are filtered in face-size units (divided by the box side), so `beta` does not depend on
    the resolution or on how close the face is. A face whose match moved more than `max_jump` box
    sides, or a change in the number of points, starts a fresh track.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0, max_jump: float = 0.5):
        self.min_cutoff, self.beta, self.d_cutoff, self.max_jump = min_cutoff, beta, d_cutoff, max_jump
        self.tracks: list[tuple[np.ndarray, OneEuroFilter, float]] = []  # (box centre, filter, unit in px)

    def configure(self, min_cutoff: float | None = None, beta: float | None = None) -> None:
        """Change settings without losing the tracks (a slider moved mid-stream)."""
        if min_cutoff is not None:
            self.min_cutoff = float(min_cutoff)
        if beta is not None:
            self.beta = float(beta)
        for _, f, _ in self.tracks:
            f.min_cutoff, f.beta = self.min_cutoff, self.beta

    def reset(self) -> None:
        self.tracks = []

    def __call__(self, faces: list, t: float) -> list:
        new_tracks, out = [], []
        free = list(range(len(self.tracks)))
        for face in faces:
            box = np.asarray(face.box, dtype=np.float64)
            side = max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)
            centre = (box[:2] + box[2:]) / 2
            best = min(free, key=lambda i: np.linalg.norm(self.tracks[i][0] - centre), default=None)
            if best is not None and np.linalg.norm(self.tracks[best][0] - centre) <= self.max_jump * side:
                free.remove(best)
                _, filt, unit = self.tracks[best]
            else:
                filt, unit = OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff), side
            # box and points filtered together in units of the face side when the track started
            # (a fixed unit: dividing by each frame's jittery side would re-inject that jitter)
            state = np.concatenate([box.reshape(2, 2), np.asarray(face.keypoints, np.float64)]) / unit
            if filt.x is not None and filt.x.shape != state.shape:
                filt.reset()
            sm = filt(state, t) * unit
            new_tracks.append((centre, filt, unit))
            out.append(replace(face, box=sm[:2].reshape(4).astype(np.float32), keypoints=sm[2:].astype(np.float32)))
        self.tracks = new_tracks
        return out
