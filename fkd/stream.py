"""Video streams: when a frame is worth the search of turned copies.

`Landmarker.predict` searches copies of the image turned by ±45° … 180° whenever no face it finds is
sure (confidence < SURE). On a photo that is cheap insurance. On a webcam stream whose face scores
just under SURE (blur, side light, a hand on the chin) it runs on every frame, and it is the
costliest thing the library does: seven detector runs plus model passes, with levelling, on all they
find: on one AVX2 core, 101 against 13 ms per frame for a defocused face that scores 0.85
(bench/stream_report.md). `SearchPacer` keeps the search where it can change the
answer: on every frame while it is what finds the faces (a head turned past the upright detector, or
no face at all), and once every `every_s` seconds while the faces come from the upright pass anyway.
"""
from __future__ import annotations

from collections.abc import Sequence

from fkd.landmarker import SURE, Face

SEARCH_EVERY_S = 1.0   # seconds between searches that keep finding nothing the upright pass missed


class SearchPacer:
    """Per-stream state: `search = pacer.due(t)`, then `pacer.seen(faces, t, search)` after predict."""

    def __init__(self, every_s: float = SEARCH_EVERY_S):
        self.every_s = every_s
        self.last = None        # time of the last search that found nothing new
        self.needed = True      # the last frame's faces came from a turned copy, or there were none

    def due(self, t: float) -> bool:
        return self.needed or self.last is None or t - self.last >= self.every_s

    def seen(self, faces: Sequence[Face], t: float, searched: bool) -> None:
        self.needed = not faces or any(f.turn for f in faces)
        if searched and not self.needed and max(f.confidence for f in faces) < SURE:
            self.last = t       # the search ran (no face was sure) and the upright pass had them all

    def reset(self) -> None:
        self.last, self.needed = None, True
