"""train.py's command line: bad values and flags refused up front, one-line errors instead of
tracebacks, --resume that cannot quietly change a run, Ctrl-C that says how to continue."""
import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import DATA, ROOT, train_stops

import train
from fkd import recipes


def cli(*args, tmp):
    """train.py on the fixture data, writing only under `tmp`."""
    cmd = [sys.executable, "train.py", *args, "--data", str(DATA), "--out", str(tmp / "w"),
           "--run-dir", str(tmp / "r"), "--quiet", "--threads", "1"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def refused(argv, capsys) -> str:
    """argparse's refusal of `argv`: exit 2 and the error line."""
    with pytest.raises(SystemExit) as e:
        train.parse_args(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--epochs", "-3"), ("--batch", "0"), ("--lr", "-1"),
                                        ("--lr", "0"), ("--lr", "nan"), ("--distil", "1.5"), ("--distil", "-0.1"),
                                        ("--eval-every", "0"), ("--stop-after", "-1"), ("--limit", "-1"),
                                        ("--workers", "-1"), ("--threads", "-2")])
def test_out_of_range_numbers_are_refused(capsys, flag, value):
    line = refused(["nose", flag, value], capsys)
    assert f"error: argument {flag}: must be" in line and line.endswith(value)


def test_numbers_at_the_edge_of_their_range_are_accepted():
    args = train.parse_args(["face68_accurate", "--epochs", "1", "--batch", "1", "--lr", "1e-6", "--distil", "0",
                             "--eval-every", "1", "--stop-after", "0", "--limit", "0", "--workers", "0"])
    assert (args.epochs, args.batch, args.lr, args.distil, args.limit) == (1, 1, 1e-6, 0.0, 0)
    assert train.parse_args(["face68_accurate", "--distil", "1"]).distil == 1.0


def test_zero_epochs_trains_and_writes_nothing(tmp_path, capsys):
    line = refused(["nose", "--epochs", "0", "--out", str(tmp_path / "w"), "--run-dir", str(tmp_path / "r")], capsys)
    assert line.endswith("error: argument --epochs: must be at least 1, not 0"), line
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,words", [(["ibug68", "--sweep"], "--sweep is for nose only"),
                                        (["report", "--sweep"], "--sweep is for nose only"),
                                        (["nose", "--sweep", "--epochs", "3"], "--sweep picks its own"),
                                        (["nose", "--sweep", "--resume"], "--sweep picks its own"),
                                        (["imm58", "--blurpool"], "--blurpool is for resnet18 only"),
                                        (["face68_accurate", "--blurpool"], "--blurpool is for resnet18 only"),
                                        (["report", "--epochs", "3"], "--epochs do(es) not apply"),
                                        (["report", "--resume", "--name", "x"], "--name --resume do(es) not apply")])
def test_flags_that_do_not_apply_are_refused(capsys, argv, words):
    assert words in refused(argv, capsys)


def test_flags_that_apply_are_accepted():
    assert train.parse_args(["nose", "--sweep", "--limit", "4"]).sweep
    assert train.parse_args(["face68_baseline", "--blurpool"]).blurpool


@pytest.mark.parametrize("flag", ["--out", "--run-dir"])
def test_unwritable_output_folder_is_one_line_before_training(tmp_path, capsys, flag):
    (tmp_path / "a_file").write_text("not a folder")
    bad = str(tmp_path / "a_file" / "sub")
    line = train_stops(["nose", "--epochs", "1", flag, bad], tmp_path)
    assert line.startswith(f"error: {flag} {bad}") and line.endswith("cannot write there")  # --run-dir: the run's own folder in it
    assert "validation faces" not in capsys.readouterr().out  # refused before the data was read


@pytest.mark.parametrize("argv", [["face68_accurate", "--teachers", "weights/nosuch"],
                                  ["ibug68", "--init", "weights/nosuch"]])
def test_missing_init_or_teacher_weights_are_one_line_before_the_data(tmp_path, capsys, argv):
    line = train_stops([*argv, "--epochs", "1"], tmp_path)
    assert line.startswith("error: weights/nosuch.json: model card not found") and "\n" not in line
    assert "validation faces" not in capsys.readouterr().out


def test_report_of_missing_weights_is_one_line(tmp_path):
    line = train_stops(["report", "--report-name", "nosuch"], tmp_path)
    assert line.startswith("error: ") and "nosuch.json: model card not found" in line and "\n" not in line


def started(argv: list[str], world: int = 1) -> dict:
    """The checkpoint info a run started with `argv` would have saved (only what --resume compares)."""
    return {"args": vars(train.parse_args(argv)), "world": world}


@pytest.mark.parametrize("first,then,named", [
    (["imm58", "--epochs", "20"], ["imm58"], "--epochs 20 (this command: 60)"),
    (["imm58"], ["imm58", "--epochs", "20"], "--epochs 60 (this command: 20)"),
    (["nose", "--batch", "2"], ["nose"], "--batch 2 (this command: 8)"),
    (["nose"], ["nose", "--lr", "0.01"], "--lr 0.001 (this command: 0.01)"),
    (["nose", "--seed", "1"], ["nose"], "--seed 1 (this command: 0)"),
    (["nose", "--limit", "4"], ["nose"], "--limit 4 (this command: 0)"),
    (["nose", "--data", str(DATA)], ["nose", "--data", str(DATA / "imm_face_db")], "--data"),
    (["face68_accurate"], ["face68_accurate", "--distil", "0.25"], "--distil 0.5 (this command: 0.25)"),
    (["face68_accurate", "--teachers", "a", "b"], ["face68_accurate"],
     "--teachers a b (this command: ibug68 ibug68_ctx ibug68_slim)"),
    (["ibug68", "--init", "w/x"], ["ibug68"], "--init w/x (this command: none)"),
    (["face68_baseline", "--blurpool", "--name", "r"], ["face68_baseline", "--name", "r"], "--blurpool on (this command: off)"),
    (["ibug68_ctx", "--name", "r"], ["ibug68", "--name", "r"], "recipe ibug68_ctx (this command: ibug68)"),
])
def test_resume_refuses_a_changed_setting_and_names_both_values(first, then, named):
    with pytest.raises(SystemExit) as e:
        recipes.check_resume(started(first), train.parse_args(then + ["--resume"]), world=1)
    assert named in str(e.value) and "pass the original values" in str(e.value)


def test_resume_refuses_another_number_of_processes():
    with pytest.raises(SystemExit, match=r"torchrun --nproc_per_node 2 \(this command: 1\)"):
        recipes.check_resume(started(["nose"], world=2), train.parse_args(["nose", "--resume"]), world=1)


def test_resume_accepts_the_same_settings_however_spelled():
    """No --epochs and the recipe's own --epochs are the same run; so are flags that only change
    how it runs (threads, workers, progress bars, when to pause)."""
    now = train.parse_args(["imm58", "--resume", "--threads", "1", "--quiet", "--stop-after", "5"])
    recipes.check_resume(started(["imm58", "--epochs", "60", "--lr", "1e-3"]), now, world=1)
    # the same weights named two ways are the same teacher / starting point
    now = train.parse_args(["face68_accurate", "--resume", "--init", "./weights/teachers/ibug68", "--teachers", str(ROOT / "weights" / "teachers" / "ibug68")])
    recipes.check_resume(started(["face68_accurate", "--init", "weights/teachers/ibug68", "--teachers", "weights/teachers/ibug68.safetensors"]),
                         now, world=1)


def test_resume_with_changed_epochs_stops_and_leaves_the_run_as_it_was(tmp_path):
    first = cli("nose", "--epochs", "3", "--batch", "2", "--stop-after", "1", tmp=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    ckpt = tmp_path / "r" / "nose" / "checkpoint.json"
    before = ckpt.read_text()
    p = cli("nose", "--batch", "2", "--resume", tmp=tmp_path)  # the recipe's 25 epochs, not the run's 3
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "--epochs 3 (this command: 25)" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert ckpt.read_text() == before and not (tmp_path / "w" / "nose.safetensors").exists()
    p = cli("nose", "--epochs", "3", "--batch", "2", "--resume", tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    card = json.loads((tmp_path / "w" / "nose.json").read_text())
    assert [r["epoch"] for r in card["history"]] == [0, 1, 2] and card["training"]["epochs"] == 3


def test_outputs_default_to_the_repository_not_the_current_folder():
    """Run from another folder, a training used to write ./weights, where the app never looks."""
    parser = train.get_args_parser()
    assert parser.get_default("out") == str(ROOT / "weights")
    assert parser.get_default("run_dir") == str(ROOT / "runs")


def interruptible(cmd: list[str]) -> subprocess.Popen:
    """The command with Ctrl-C's default handling: a shell that starts the tests in the background
    (`nohup pytest &`) leaves SIGINT ignored, and a child would inherit that and never stop."""
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_resume_without_a_checkpoint_refuses_rather_than_start_over(tmp_path):
    """A mistyped --run-dir used to start the run over and, at its end, overwrite --out's weights."""
    p = cli("nose", "--epochs", "2", "--batch", "2", "--resume", tmp=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "--resume: no checkpoint at" in p.stderr and "leave out --resume" in p.stderr
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_or_kill_prints_one_line_and_exits_130(tmp_path, stop):
    cmd = [sys.executable, "train.py", "nose", "--epochs", "100000", "--batch", "2", "--data", str(DATA),
           "--out", str(tmp_path / "w"), "--run-dir", str(tmp_path / "r"), "--quiet", "--threads", "1"]
    proc = interruptible(cmd)
    ckpt = tmp_path / "r" / "nose" / "checkpoint.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and json.loads(ckpt.read_text())["epoch"] >= 1):
        time.sleep(0.02)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    saved = json.loads(ckpt.read_text())["epoch"]
    assert err.strip().startswith("stopped at epoch ") and f"--resume continues after epoch {saved}" in err


def test_ctrl_c_in_a_sweep_does_not_suggest_resume(tmp_path):
    """A sweep cannot be resumed (--sweep refuses --resume): its Ctrl-C line must not say it can."""
    cmd = [sys.executable, "train.py", "nose", "--sweep", "--batch", "2", "--data", str(DATA),
           "--out", str(tmp_path / "w"), "--run-dir", str(tmp_path / "r"), "--quiet", "--threads", "1"]
    proc = interruptible(cmd)
    for line in proc.stdout:  # each epoch prints a JSON line: the first cell is training
        if '"epoch": 1' in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert "a sweep starts over when run again" in err and "--resume" not in err


def test_help_names_the_default_model_and_the_imm58_time():
    lines = train.get_args_parser().format_help().splitlines()
    line = lambda start: next(l for l in lines if l.strip().startswith(start))
    assert "default" in line("python train.py face68 ") and "default" not in line("python train.py face68_accurate ")
    assert "teacher" in line("python train.py ibug68 ") and "from scratch" in line("python train.py ibug68 ")
    assert "about 2 minutes" in line("python train.py imm58 ")


def test_diverged_loss_is_one_line(tmp_path):
    p = cli("nose", "--epochs", "3", "--lr", "1e12", tmp=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error: loss is nan") and "lower the learning rate" in p.stderr
