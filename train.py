"""Train the project's models (Parts 1–3) on CPU or CUDA; one process or torchrun.

    python train.py nose                      # Part 1: nose tip on IMM (seconds)
    python train.py nose --sweep              # the seeds' learning-rate × epochs table
    python train.py imm58                     # Part 2: 58 IMM points (about 2 minutes)
    python train.py face68_baseline           # Part 3 seed recipe: ResNet18 regression on 300-W
    python train.py face68_accurate           # Part 3+: ibug68 distilled from three teachers
    python train.py face68                    # the default: 128², distilled from four 160² models
    python train.py ibug68                    # a teacher, from scratch (~75 min); also _ctx, _slim,
                                              # _quick, _128_base: they go to weights/teachers/
    python train.py ibug68 --resume           # continue a stopped run from its last checkpoint
    torchrun --nproc_per_node 2 train.py ibug68   # several processes (gloo on CPU, nccl on GPU)

Data: --data DIR holding imm_face_db/ and/or 300w/ (default ../shared/data when it exists).
Outputs: weights/<name>.safetensors + .json card + report PNGs; checkpoints in runs/<name>/.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def get_args_parser() -> argparse.ArgumentParser:
    from fkd.data import DATA_DIR
    from fkd.flags import bounded
    from fkd.recipes import RECIPES
    from fkd.weights import WEIGHTS_DIR

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(RECIPES) + ["report"], help="recipe to train (or 'report' to redraw PNGs)")
    p.add_argument("--data", default=str(DATA_DIR), help="folder with imm_face_db/ and 300w/")
    # beside train.py, wherever it is run from: the weights/ the app and fkd.Landmarker load from
    p.add_argument("--out", default=str(WEIGHTS_DIR), help="where weights + model cards go (default: weights/ beside train.py)")
    p.add_argument("--run-dir", default=str(ROOT / "runs"), help="where checkpoints and loss CSVs go (default: runs/ beside train.py)")
    p.add_argument("--epochs", type=bounded(int, 1), help="override the recipe's epochs")
    p.add_argument("--batch", type=bounded(int, 1), help="override the recipe's batch size")
    p.add_argument("--lr", type=bounded(float, 0, above=True), help="override the recipe's learning rate")
    p.add_argument("--distil", type=bounded(float, 0, 1), help="override the recipe's teacher share of the loss (0-1)")
    p.add_argument("--teachers", nargs="+", help="distil from these weights instead of the recipe's teachers "
                   "(pipnet models with the same points, at any input size), e.g. --teachers weights/teachers/ibug68")
    p.add_argument("--name", help="weights name (default: the recipe's)")
    p.add_argument("--blurpool", action="store_true", help="resnet18: anti-aliased (blur-pool) downsampling")
    p.add_argument("--resume", action="store_true",
                   help="continue from runs/<name>/checkpoint (pass the flags the run was started with)")
    p.add_argument("--init", help="start from these trained weights (fine-tuning), e.g. weights/teachers/ibug68")
    p.add_argument("--sweep", action="store_true", help="nose: learning rate × epochs table")
    p.add_argument("--eval-every", type=bounded(int, 1), help="validate every N epochs (default: the recipe's)")
    p.add_argument("--stop-after", type=bounded(int, 0), default=0, help="stop after this many epochs (resume later)")
    p.add_argument("--limit", type=bounded(int, 0), default=0, help="use only the first N training faces (smoke tests)")
    p.add_argument("--workers", type=bounded(int, 0), default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=bounded(int, 0), default=0, help="CPU threads (0 = torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--report-name", default="face68", help="report: which weights to redraw")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, and refuse flags this recipe would silently ignore (argparse's one-line error, exit 2)."""
    p = get_args_parser()
    args = p.parse_args(argv)
    if args.sweep and args.model != "nose":
        p.error("--sweep is for nose only (the seeds' learning rate × epochs table)")
    if args.sweep and (args.epochs is not None or args.lr is not None or args.name or args.resume):
        p.error("--sweep picks its own learning rates, epochs and names: leave out --epochs, --lr, --name and --resume")
    if args.blurpool and args.model != "face68_baseline":
        p.error("--blurpool is for resnet18 only (face68_baseline)")
    if args.model == "report":  # it redraws the pictures of saved weights: nothing is trained
        given = [f"--{k.replace('_', '-')}" for k in TRAINING_FLAGS if getattr(args, k) != p.get_default(k)]
        if given:
            p.error(f"report redraws the pictures of --report-name's weights; {' '.join(given)} do(es) not apply")
    return args


# the flags that shape a training run (report mode takes none of them)
TRAINING_FLAGS = ("epochs", "batch", "lr", "distil", "teachers", "name", "blurpool", "resume", "init", "sweep",
                  "eval_every", "stop_after", "limit")


def _stop(signum, frame):
    """`kill` (SIGTERM: a job scheduler's time limit) stops a run as Ctrl-C does: a line on how to continue."""
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> None:
    from fkd import recipes
    from fkd.weights import WeightsError

    signal.signal(signal.SIGTERM, _stop)
    try:
        if args.model == "report":
            from training.report import redraw_report
            redraw_report(args)
        elif args.sweep:
            recipes.sweep(args)
        else:
            from training.report import write_training_report
            recipes.run(args, report=write_training_report)
    except (WeightsError, FloatingPointError) as e:  # a missing --init/--teachers/--report-name, a diverged loss
        raise SystemExit(f"error: {e}") from None
    except KeyboardInterrupt:  # Ctrl-C outside the epochs (recipes.run reports those itself)
        print("\nstopped", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main(parse_args())
