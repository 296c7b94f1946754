import numpy as np
import pytest

from fkd.metrics import auc, failure_rate, mae, nme, point_nme, summary


def shape68():
    rng = np.random.default_rng(0)
    g = rng.uniform(0, 100, (3, 68, 2))
    g[:, 36] = [10, 50]
    g[:, 45] = [60, 50]  # inter-ocular distance 50
    return g


def test_nme_known_values():
    g = shape68()
    assert nme(g, g).tolist() == [0, 0, 0]
    p = g + [3, 4]  # every point off by 5 px
    assert nme(p, g) == pytest.approx([0.1, 0.1, 0.1])
    assert point_nme(p, g) == pytest.approx(np.full(68, 0.1))
    assert mae(p, g) == pytest.approx(3.5)


def test_failure_rate_and_auc():
    e = np.array([0.01, 0.02, 0.09, 0.2])
    assert failure_rate(e, 0.08) == 0.5
    assert auc(np.zeros(10)) == pytest.approx(1.0, abs=1e-3)
    assert auc(np.full(10, 0.5)) == 0.0
    # all faces at 4 %: CED is 0 until 0.04 then 1 → area half of the range
    assert auc(np.full(10, 0.04)) == pytest.approx(0.5, abs=0.01)


def test_summary_in_percent():
    g = shape68()
    s = summary(g + [3, 4], g)
    assert s["nme_mean"] == pytest.approx(10.0) and s["fr8"] == 100.0 and s["faces"] == 3
    one = summary(np.zeros((2, 1, 2)), np.ones((2, 1, 2)))
    assert "nme_mean" not in one and one["mae_px"] == 1.0


def test_reported_metrics_name_their_unit_and_are_rounded():
    from fkd.metrics import with_units
    g = shape68()
    s = with_units(summary(g + [3, 4.001], g))
    assert set(s) == {"faces", "nme_mean_percent", "nme_median_percent", "fr8_percent", "auc8_percent", "mae_px"}
    assert s["nme_mean_percent"] == 10.0016 and s["fr8_percent"] == 100.0 and s["mae_px"] == 3.5005
    assert with_units({"faces": 2, "mae_px": 1 / 3}) == {"faces": 2, "mae_px": 0.3333}
    with pytest.raises(ValueError, match="nme_mean, mae_px not a finite number"):
        with_units({"faces": 1, "nme_mean": float("nan"), "mae_px": float("inf")})
