"""train.py end to end on the fixture data: smoke runs, kill -9 + resume, torchrun, missing data."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import fkd
import torch
from conftest import DATA, ROOT, train_stops
from safetensors.torch import load_file

from fkd.weights import load_model


def train(*args, tmp, procs: int = 1):
    """train.py on the fixture data, in one process or `procs` torchrun processes."""
    launch = [sys.executable] + (["-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port",
                                  "29731"] if procs > 1 else [])
    cmd = launch + ["train.py", *args, "--data", str(DATA), "--out", str(tmp / "w"), "--run-dir", str(tmp / "r"),
                    "--quiet", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if procs > 1 else None
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("recipe,name,n", [("nose", "nose", 1), ("imm58", "imm58", 58),
                                           ("face68_baseline", "face68_baseline", 68), ("ibug68", "ibug68", 68)])
def test_one_epoch_smoke_run_writes_loadable_weights(tmp_path, recipe, name, n):
    p = train(recipe, "--epochs", "1", "--batch", "2", tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    out = tmp_path / "w" if name in fkd.MODELS else tmp_path / "w" / "teachers"  # a teacher's recipe
    model, card = load_model(out / name)
    assert card["config"]["n_points"] == n and card["training"]["epochs"] == 1
    assert len(card["history"]) == 1 and "mae_px" in card["val_metrics"]
    x = torch.zeros(1, card["config"]["in_channels"], card["config"]["input_h"], card["config"]["input_w"])
    assert model(x)[0].shape == (1, n, 2)
    assert (out / "reports" / f"{name}_curves.png").exists()
    assert (tmp_path / "r" / name / "history.csv").read_text().startswith("epoch,train_loss")
    # flip_test="auto" mirrors below the model's median confidence on its training faces; the
    # regression models have no confidence, so no threshold
    if recipe == "ibug68":
        assert 0 < card["flip_below"] <= 1
    else:
        assert "flip_below" not in card
    assert len(card["label_shift"]) == 2  # Landmarker adds it to every pass (training_face_stats)


def test_report_gives_an_older_card_what_training_learns_from_its_faces(tmp_path):
    """`train.py report` on a card without `label_shift` (cards before it) measures it again, and the
    card's validation numbers are redone for the points Landmarker gives."""
    assert train("nose", "--epochs", "1", "--batch", "2", tmp=tmp_path).returncode == 0
    path = tmp_path / "w" / "nose.json"
    trained = json.loads(path.read_text())
    older = {k: v for k, v in trained.items() if k not in ("label_shift", "val_metrics")}
    path.write_text(json.dumps(older))
    p = subprocess.run([sys.executable, "train.py", "report", "--report-name", "nose", "--out", str(tmp_path / "w"),
                        "--data", str(DATA)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    redone = json.loads(path.read_text())
    assert redone["label_shift"] == pytest.approx(trained["label_shift"], abs=1e-3)
    assert redone["val_metrics"]["mae_px"] == pytest.approx(trained["val_metrics"]["mae_px"], abs=1e-3)


def test_label_shift_is_the_mean_of_label_minus_prediction():
    from fkd.recipes import training_face_stats

    class Constant(torch.nn.Module):  # every face's points at (10, 10); no confidence
        def forward(self, x):
            return torch.full((len(x), 3, 2), 10.0), None

    faces = [(torch.zeros(1, 4, 4), torch.tensor([[11.0, 9.5], [12.0, 9.5], [10.0, 9.5]])) for _ in range(5)]
    assert training_face_stats(Constant(), faces, "cpu") == {"label_shift": [1.0, -0.5]}


def test_loss_axis_is_log_only_where_the_losses_span_a_decade():
    from fkd.viz import loss_curves, loss_scale
    fine_tune = json.loads((ROOT / "weights" / "face68_accurate.json").read_text())["history"]  # the shipped card: 0.9-1.6
    assert loss_scale(fine_tune) == "linear"
    assert loss_scale([{"epoch": 0, "train_loss": 40.0}, {"epoch": 1, "train_loss": 2.0, "val_loss": 1.5}]) == "log"
    assert loss_scale([]) == "linear" and loss_curves(fine_tune, "x").ndim == 3


def test_killed_run_resumes_to_the_same_final_state(tmp_path):
    ref = train("imm58", "--epochs", "30", "--batch", "2", tmp=tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    cmd = [sys.executable, "train.py", "imm58", "--epochs", "30", "--batch", "2", "--data", str(DATA),
           "--out", str(run / "w"), "--run-dir", str(run / "r"), "--quiet", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "r" / "imm58" / "checkpoint.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if ckpt.exists() and json.loads(ckpt.read_text())["epoch"] >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # mid-run, most likely mid-epoch: no chance to clean up
    proc.wait()
    killed_at = json.loads(ckpt.read_text())["epoch"]
    assert killed_at < 29, "the run ended before it could be killed"
    assert not (run / "w" / "imm58.safetensors").exists()
    res = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resumed from" in res.stdout
    a = load_file(str(tmp_path / "ref" / "w" / "imm58.safetensors"))
    b = load_file(str(run / "w" / "imm58.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_torchrun_two_processes(tmp_path):
    p = train("nose", "--epochs", "2", tmp=tmp_path, procs=2)
    assert p.returncode == 0, p.stderr[-3000:]
    _, card = load_model(tmp_path / "w" / "nose")
    assert card["training"]["world_size"] == 2


def test_torchrun_stops_on_every_rank_and_resumes(tmp_path):
    p = train("nose", "--epochs", "3", "--stop-after", "1", tmp=tmp_path, procs=2)
    assert p.returncode == 0, p.stderr[-3000:]  # a rank that kept training would die at its next all-reduce
    assert "stopping after epoch 0" in p.stdout and not (tmp_path / "w" / "nose.safetensors").exists()
    p = train("nose", "--epochs", "3", "--resume", tmp=tmp_path, procs=2)
    assert p.returncode == 0, p.stderr[-3000:]
    _, card = load_model(tmp_path / "w" / "nose")
    assert [r["epoch"] for r in card["history"]] == [0, 1, 2]


def test_missing_data_is_explained(tmp_path, capsys):
    line = train_stops(["ibug68", "--data", tmp_path / "nothing"], tmp_path)
    assert line.startswith(f"error: {tmp_path / 'nothing' / '300w'} not found") and "--data" in line
    (tmp_path / "d" / "300w").mkdir(parents=True)
    (tmp_path / "d" / "300w" / "lonely.jpg").write_bytes(b"x")
    line = train_stops(["ibug68", "--data", tmp_path / "d"], tmp_path)
    assert line == f"error: no labelled faces under {tmp_path / 'd' / '300w'}"
    assert "skipped 1 file" in capsys.readouterr().err


def test_fine_tune_from_trained_weights(tmp_path):
    first = train("nose", "--epochs", "2", tmp=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = train("nose", "--epochs", "1", "--lr", "1e-4", "--name", "nose_ft", "--init", str(tmp_path / "w" / "nose"),
                  tmp=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "starting from" in again.stdout
    _, card = load_model(tmp_path / "w" / "nose_ft")
    assert card["training"]["init"].endswith("nose")
    wrong = train("imm58", "--epochs", "1", "--init", str(tmp_path / "w" / "nose"), tmp=tmp_path)
    assert wrong.returncode != 0 and "not this recipe's" in wrong.stderr


def test_distillation_recipe_starts_from_its_init_and_learns_from_its_teachers(tmp_path):
    p = train("face68_accurate", "--epochs", "1", "--batch", "2", "--distil", "0.25", tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "starting from ibug68" in p.stdout and "distilling from ibug68, ibug68_ctx, ibug68_slim" in p.stdout
    model, card = load_model(tmp_path / "w" / "face68_accurate")
    t = card["training"]
    assert t["init"] == "ibug68" and t["teachers"] == ["ibug68", "ibug68_ctx", "ibug68_slim"] and t["distil"] == 0.25
    assert model(torch.zeros(1, 3, 160, 160))[0].shape == (1, 68, 2)
    wrong = train("nose", "--epochs", "1", "--distil", "0.5", tmp=tmp_path)
    assert wrong.returncode != 0 and "no teachers" in wrong.stderr


def test_a_smaller_input_starts_from_and_learns_from_a_larger_grid_model(tmp_path):
    """ibug68_128_base starts from face68_accurate's 160² weights (all convolutions) and distils from it at 160²."""
    p = train("ibug68_128_base", "--epochs", "1", "--batch", "2", tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "starting from face68_accurate" in p.stdout and "distilling from face68_accurate (flip-averaged)" in p.stdout
    model, card = load_model(tmp_path / "w" / "teachers" / "ibug68_128_base")
    assert (card["config"]["input_w"], card["config"]["input_h"]) == (128, 128)
    assert model(torch.zeros(1, 3, 128, 128))[0].shape == (1, 68, 2)


def test_teachers_can_be_chosen_on_the_command_line(tmp_path):
    first = train("ibug68", "--epochs", "1", "--batch", "2", tmp=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    teacher = str(tmp_path / "w" / "teachers" / "ibug68")
    p = train("ibug68", "--epochs", "1", "--batch", "2", "--name", "self_kd", "--init", teacher, "--teachers", teacher,
              tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"distilling from {teacher} (flip-averaged), weight 0.5" in p.stdout
    _, card = load_model(tmp_path / "w" / "teachers" / "self_kd")
    assert card["training"]["teachers"] == [teacher] and card["training"]["distil"] == 0.5
    assert teacher in card["part"]
    wrong = train("face68_baseline", "--epochs", "1", "--batch", "2", "--teachers", teacher, tmp=tmp_path)
    assert wrong.returncode != 0 and "needs a pipnet student" in wrong.stderr


def test_fine_tune_from_a_card_older_than_a_config_key(tmp_path):
    """Cards written before a ModelConfig key existed (weights/teachers/ibug68.json has no mix_width) still
    serve as --init: a missing key means its default, as when the app loads them."""
    first = train("nose", "--epochs", "1", tmp=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    card_path = tmp_path / "w" / "nose.json"
    card = json.loads(card_path.read_text())
    del card["config"]["mix_width"]
    card_path.write_text(json.dumps(card))
    again = train("nose", "--epochs", "1", "--name", "nose_ft", "--init", str(tmp_path / "w" / "nose"), tmp=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "starting from" in again.stdout


@pytest.mark.parametrize("key", ["nose", "imm58", "face68_baseline", "ibug68", "ibug68_ctx", "ibug68_slim", "face68_accurate",
                                 "ibug68_128_base", "face68", "ibug68_quick"])
def test_shipped_weights_are_what_their_recipe_trains(key):
    """`python train.py KEY` must rebuild the network in weights/: same config, epochs, crop and augmentation,
    from the same start and teachers."""
    from fkd.geometry import CropSpec
    from fkd.models import ModelConfig
    from fkd.recipes import RECIPES
    from fkd.weights import resolve
    recipe = RECIPES[key]
    card = json.loads(resolve(recipe.name).with_suffix(".json").read_text())
    assert ModelConfig.from_dict(card["config"]) == recipe.model
    assert card["training"]["epochs"] == recipe.epochs and card["training"]["batch"] == recipe.batch
    if recipe.data == "300w":  # the IMM crops are measured from the data at training time
        assert CropSpec(**card["crop"]) == recipe.crop
    assert card["training"]["aug"] == json.loads(json.dumps(recipe.aug))  # tuples are lists in JSON
    if "init" in card["training"]:  # the IMM cards have neither key; cards without teachers may lack that one
        assert card["training"]["init"] == recipe.init
        assert card["training"].get("teachers", []) == list(recipe.teachers)


def test_the_locator_recipe_writes_beside_the_lineup_and_face68s_card_names_it(tmp_path):
    """face68_locator is used at run time (it places face68's crop), so it is written where the lineup
    is, not among the teachers; the face68 recipe's card names it."""
    from fkd.recipes import RECIPES
    assert RECIPES["face68"].locator == "face68_locator"
    assert "face68_locator" in RECIPES
    p = train("face68_locator", "--epochs", "1", "--batch", "2", tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    model, card = load_model(tmp_path / "w" / "face68_locator")
    assert not (tmp_path / "w" / "teachers" / "face68_locator.json").exists()
    assert (card["config"]["input_w"], card["config"]["input_h"]) == (64, 64) and "locator" not in card
    assert card["crop"] == RECIPES["face68"].crop.to_dict()  # it reads the crop face68's boxes give
