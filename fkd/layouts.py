"""Point layouts: names, left/right flip permutations and drawing contours per scheme.

The flip permutations were derived by mirroring each data set's mean shape and matching points
(Hungarian assignment); tests check they are involutions that map the mean shape onto itself.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    name: str
    n_points: int
    flip: tuple[int, ...]                # flip[i] = index of the mirror point of i
    contours: tuple[tuple[int, ...], ...]  # polylines for drawing (closed if first == last)
    eyes: tuple[int, int] | None = None  # outer eye corners: NME normaliser


IBUG68 = Layout(
    "ibug68", 68,
    flip=(16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
          27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40, 54, 53, 52, 51,
          50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65),
    contours=(tuple(range(0, 17)), tuple(range(17, 22)), tuple(range(22, 27)), tuple(range(27, 31)),
              tuple(range(30, 36)) + (30,), tuple(range(36, 42)) + (36,), tuple(range(42, 48)) + (42,),
              tuple(range(48, 60)) + (48,), tuple(range(60, 68)) + (60,)),
    eyes=(36, 45),
)

IMM58 = Layout(
    "imm58", 58,
    flip=(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 21, 22, 23, 24, 25, 26, 27, 28, 13, 14, 15, 16, 17, 18,
          19, 20, 34, 35, 36, 37, 38, 29, 30, 31, 32, 33, 43, 42, 41, 40, 39, 46, 45, 44, 57, 56, 55, 54, 53,
          52, 51, 50, 49, 48, 47),
    # IMM paths (from the .asf "connects" columns): jaw, two eyes, two brows, mouth, nose.
    contours=(tuple(range(0, 13)), tuple(range(13, 21)) + (13,), tuple(range(21, 29)) + (21,),
              tuple(range(29, 34)), tuple(range(34, 39)), tuple(range(39, 47)) + (39,),
              tuple(range(47, 58))),
    eyes=None,
)

NOSE1 = Layout("nose", 1, flip=(0,), contours=())

IMM_NOSE_INDEX = 52  # the seeds' nose tip: the 53rd IMM point

LAYOUTS = {l.name: l for l in (IBUG68, IMM58, NOSE1)}
