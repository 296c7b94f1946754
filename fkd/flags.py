"""Argparse types shared by the command lines, training's and inference's: a module of its own so that
`train.py` does not import the inference CLIs (and, through them, the Landmarker and its runtimes)."""
from __future__ import annotations

import argparse
import math


def bounded(kind: type, low: float, high: float | None = None, above: bool = False):
    """A numeric flag type (argparse's `type=`) that refuses out-of-range values before anything runs:
    0 epochs would ship an untrained model, a NaN smoothing would fail while drawing. The CLIs share it."""
    def parse(text: str):
        x = kind(text)
        if not math.isfinite(x) or (x <= low if above else x < low) or (high is not None and x > high):
            rule = f"between {low} and {high}" if high is not None else f"above {low}" if above else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text}")
        return x
    parse.__name__ = kind.__name__  # argparse says "invalid int value: 'x'" for a non-number
    return parse
