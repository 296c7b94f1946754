"""Accuracy metrics of the field, as pure functions on arrays of points (M faces, N points, 2)."""
from __future__ import annotations

import math

import numpy as np

# `summary`'s keys (the model cards' "val_metrics") → the names reports give them, saying their unit
UNIT_NAMES = {"nme_mean": "nme_mean_percent", "nme_median": "nme_median_percent",
              "fr8": "fr8_percent", "auc8": "auc8_percent"}
REPORT_DIGITS = 4      # decimals of a reported float: 0.0001 % of NME, 0.0001 px


def normaliser(gt: np.ndarray, eyes: tuple[int, int] | None) -> np.ndarray:
    """Per-face distance: outer eye corners (300-W inter-ocular) or, without them, the box diagonal."""
    gt = np.asarray(gt, dtype=np.float64)
    if eyes is not None:
        return np.linalg.norm(gt[:, eyes[0]] - gt[:, eyes[1]], axis=-1)
    return np.linalg.norm(gt.max(1) - gt.min(1), axis=-1)


def nme(pred: np.ndarray, gt: np.ndarray, eyes: tuple[int, int] | None = (36, 45)) -> np.ndarray:
    """Per-face normalised mean error: mean point-to-point distance / normaliser (a fraction)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    err = np.linalg.norm(pred - gt, axis=-1).mean(-1)
    return err / np.maximum(normaliser(gt, eyes), 1e-9)


def point_nme(pred: np.ndarray, gt: np.ndarray, eyes: tuple[int, int] | None = (36, 45)) -> np.ndarray:
    """Per-landmark NME over faces (N,): which points are hard."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    err = np.linalg.norm(pred - gt, axis=-1) / np.maximum(normaliser(gt, eyes), 1e-9)[:, None]
    return err.mean(0)


def failure_rate(nmes: np.ndarray, threshold: float = 0.08) -> float:
    return float(np.mean(np.asarray(nmes) > threshold))


def ced(nmes: np.ndarray, threshold: float = 0.08, steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: x = NME thresholds in [0, threshold], y = fraction of faces ≤ x."""
    x = np.linspace(0, threshold, steps + 1)
    y = (np.asarray(nmes)[None, :] <= x[:, None]).mean(1)
    return x, y


def auc(nmes: np.ndarray, threshold: float = 0.08) -> float:
    """Area under the CED curve up to `threshold`, divided by `threshold` (1 = perfect)."""
    x, y = ced(nmes, threshold)
    return float(np.trapezoid(y, x) / threshold)


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    """The course's Kaggle-style score: mean absolute error per coordinate, in pixels."""
    return float(np.abs(np.asarray(pred, np.float64) - np.asarray(gt, np.float64)).mean())


def summary(pred: np.ndarray, gt: np.ndarray, eyes: tuple[int, int] | None = (36, 45)) -> dict:
    """Everything we report for a set of faces, in percent where the field uses percent."""
    if np.asarray(gt).shape[1] < 2:  # one point (nose tip): no shape to normalise by, pixels only
        return {"faces": int(len(gt)), "mae_px": mae(pred, gt),
                "mean_dist_px": float(np.linalg.norm(np.asarray(pred) - np.asarray(gt), axis=-1).mean())}
    e = nme(pred, gt, eyes)
    return {"faces": int(len(e)), "nme_mean": 100 * float(e.mean()), "nme_median": 100 * float(np.median(e)),
            "fr8": 100 * failure_rate(e), "auc8": 100 * auc(e), "mae_px": mae(pred, gt)}


def with_units(metrics: dict, digits: int = REPORT_DIGITS) -> dict:
    """`metrics` for a report: keys that say their unit (`UNIT_NAMES`; `_px` and counts already do),
    floats rounded to `digits` decimals. A ValueError names any value that is not a finite number:
    JSON has no NaN, and a NaN score says the input was broken, not how good the model is."""
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"{', '.join(bad)} not a finite number")
    return {UNIT_NAMES.get(k, k): round(v, digits) if isinstance(v, float) else v for k, v in metrics.items()}
