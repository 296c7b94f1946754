from dataclasses import dataclass

import numpy as np
import pytest

from fkd.smoothing import OneEuroFilter, PointSmoother, strength_to_cutoff


@dataclass
class F:  # the Face fields the smoother uses
    box: np.ndarray
    keypoints: np.ndarray


def face_at(x, y, side=100.0, noise=None):
    pts = np.array([[x + 0.3 * side, y + 0.4 * side], [x + 0.7 * side, y + 0.4 * side], [x + 0.5 * side, y + 0.8 * side]])
    if noise is not None:
        pts = pts + noise
    return F(np.array([x, y, x + side, y + side], np.float32), pts.astype(np.float32))


def test_one_euro_reduces_jitter_of_a_still_point():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    raw = 100 + rng.normal(0, 2.0, (300, 2))
    out = np.array([f(x, t / 30) for t, x in enumerate(raw)])
    assert out[50:].std(0).max() < 0.4 * raw[50:].std(0).min()
    assert np.abs(out[50:].mean(0) - 100).max() < 1.0


def test_one_euro_follows_a_jump():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    xs = [np.array([0.0, 0.0])] * 30 + [np.array([50.0, 0.0])] * 30
    out = [f(x, t / 30) for t, x in enumerate(xs)]
    assert abs(out[-1][0] - 50) < 1.0          # arrives
    assert 0 < out[30][0] < 50                 # but not in one frame
    assert max(o[0] for o in out) <= 50 + 1e-9  # and never overshoots


def test_speed_term_cuts_the_lag():
    """beta > 0 raises the cut-off while moving: less lag on a ramp than the same filter without it."""
    ramp = [np.array([10.0 * t / 30]) for t in range(60)]
    lag = {}
    for beta in (0.0, 1.0):
        f = OneEuroFilter(min_cutoff=0.5, beta=beta)
        lag[beta] = ramp[-1][0] - [f(x, t / 30) for t, x in enumerate(ramp)][-1][0]
    assert 0 <= lag[1.0] < 0.5 * lag[0.0]


def test_repeated_timestamp_and_bad_settings():
    f = OneEuroFilter()
    f(np.array([1.0]), 0.0)
    assert f(np.array([9.0]), 0.0)[0] == 1.0
    with pytest.raises(ValueError, match="cut-off frequencies must be positive"):
        OneEuroFilter(min_cutoff=0)


def test_strength_slider_maps_to_decreasing_cutoff():
    cuts = [strength_to_cutoff(s) for s in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in zip(cuts, cuts[1:]))
    assert cuts[0] == pytest.approx(30.0) and cuts[-1] == pytest.approx(0.1)


def test_point_smoother_keeps_faces_apart_and_smooths_each():
    rng = np.random.default_rng(1)
    sm = PointSmoother(min_cutoff=1.0, beta=0.0)
    raw_err, out_err = [], []
    for t in range(90):
        a = face_at(50, 50, noise=rng.normal(0, 2, (3, 2)))
        b = face_at(400, 60, side=80, noise=rng.normal(0, 2, (3, 2)))
        faces = [a, b] if t % 2 else [b, a]                   # detector order changes: tracks must not swap
        out = sm(faces, t / 30)
        by_x = sorted(out, key=lambda f: f.box[0])
        if t > 30:
            raw_err.append(np.abs(a.keypoints - face_at(50, 50).keypoints).mean())
            out_err.append(np.abs(by_x[0].keypoints - face_at(50, 50).keypoints).mean())
        assert by_x[1].box[0] > 300                             # face b stays face b
    assert len(sm.tracks) == 2
    assert np.mean(out_err) < 0.5 * np.mean(raw_err)


def test_point_smoother_starts_fresh_for_a_new_face():
    sm = PointSmoother(min_cutoff=0.5)
    for t in range(10):
        sm([face_at(50, 50)], t / 30)
    far = face_at(500, 300)
    out = sm([far], 10 / 30)                                   # a different face far away: no averaging
    np.testing.assert_allclose(out[0].keypoints, far.keypoints, atol=1e-4)
    # another layout (58 → 68 points) on the same face resets its track instead of failing
    f = face_at(500, 300)
    f.keypoints = np.zeros((5, 2), np.float32) + 550
    np.testing.assert_allclose(sm([f], 11 / 30)[0].keypoints, f.keypoints, atol=1e-4)
    assert len(sm.tracks) == 1
    assert sm([], 12 / 30) == [] and sm.tracks == []
