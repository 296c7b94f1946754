"""What a training run prints: a progress bar that counts, times in a unit that reads, and final
numbers that say how they relate to the epoch rows."""
import json
import re
import subprocess
import sys

import pytest
import torch
from conftest import DATA, ROOT

from fkd import engine
from fkd.recipes import final_report


def test_durations_read_in_their_unit():
    assert [engine.duration(s) for s in (4.62, 59.9, 125, 7300)] == ["4.6 s", "59.9 s", "2.1 min", "2.0 h"]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x, y):
        p = self.fc(x.flatten(1))
        return p, ((p - y) ** 2).mean()


def test_progress_bar_never_shows_a_stale_count(capsys):
    """The bar was redrawn at each step with the count of tqdm's last redraw: 0/3 through a short epoch."""
    model = Tiny()
    batches = [(torch.ones(2, 1, 2, 2), torch.zeros(2, 2))] * 3
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _, step = engine.train_one_epoch(model, opt, batches, "cpu", step=0, total_steps=3, base_lr=0.1)
    assert step == 3
    drawn = [s for s in capsys.readouterr().err.split("\r") if "loss=" in s]
    assert not any(" 0/3 " in s for s in drawn), drawn


@pytest.mark.parametrize("which, row", [("raw", "the last epoch's val_nme and val_mae_px"),
                                        ("ema", "the last epoch's val_nme_ema")])
def test_final_report_says_which_numbers_the_epoch_rows_hold(which, row):
    shipped = {"nme_mean": 3.4712, "nme_median": 3.1, "mae_px": 1.2345}
    as_trained = {"nme_mean": 3.52, "nme_median": 3.2, "mae_px": 1.25}
    text = final_report("w/m.safetensors", which, shipped, as_trained, [0.5, -0.0312], 4.62)
    assert text.splitlines() == [
        f"saved w/m.safetensors ({which} weights), 4.6 s of training and validation",
        "validation: NME 3.471 % (median 3.100), MAE 1.234 px with the label shift (+0.500, -0.031 px) added, "
        "as Landmarker gives points;",
        f"  NME 3.520 % (median 3.200), MAE 1.250 px without it, as {row}"]


def test_final_numbers_before_the_label_shift_are_the_last_epochs(tmp_path):
    """Same model, same validation faces: the final MAE without the label shift is the last row's
    val_mae_px; with it, the card's. The time is the rows' time, in seconds for a short run."""
    p = subprocess.run([sys.executable, "train.py", "nose", "--epochs", "2", "--batch", "2", "--data", str(DATA),
                        "--out", str(tmp_path / "w"), "--run-dir", str(tmp_path / "r"), "--quiet", "--threads", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    card = json.loads((tmp_path / "w" / "nose.json").read_text())
    assert rows == card["history"] and [r["epoch"] for r in rows] == [0, 1]
    shipped, trained = re.search(r"MAE (\S+) px with the label shift .*\n  MAE (\S+) px without it, "
                                 r"as the last epoch's val_mae_px", p.stdout).groups()
    assert trained == f"{rows[-1]['val_mae_px']:.3f}"
    assert shipped == f"{card['val_metrics']['mae_px']:.3f}"
    took = re.search(r"\(raw weights\), (\S+) s of training and validation", p.stdout).group(1)
    assert float(took) == rows[-1]["elapsed_s"] == card["training"]["wall_time_s"]
