"""Video streams: faces followed from frame to frame, and when a frame is worth the search of turned copies.

`Landmarker.predict` searches copies of the image turned by ±45° … 180° whenever no face it finds is
sure (confidence < `Settings.search_below`) or one lies tilted past `rolled_above` (`Landmarker.wants_search`). On a photo that
is cheap insurance. On a webcam stream it is the costliest thing the library does, seven detector
runs plus model passes, with levelling, on all they find, and it would run on every frame: on one
AVX2 core, 101 against 13 ms per frame for a defocused face that scores 0.85, and ~180 ms for a head
lying down that only the search finds (bench/stream_report.md).
`SearchPacer` keeps it where it can change the answer. While it finds nothing the upright pass
missed (the faces come from the upright pass anyway, or there is no face at all), it runs once every
`every_s` seconds: a head that lies down in front of the camera is found within that time. While
it is what finds the faces (found in a turned copy) it runs on every frame, but between full
searches only in the copies turned as the faces were found on the last frame.

`Tracker` is the whole per-frame pipeline of a stream, the webcam's and a video file's (fkd.video):
faces found once are followed from their last points (no detector, no search), the detector (and
the paced search) looks again when a face is lost and twice a second for newcomers, and the points
are smoothed (One-Euro, fkd.smoothing) on the stream's clock.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from fkd.landmarker import Face, FlipTest, Landmarker, near
from fkd.smoothing import PointSmoother, strength_to_cutoff

SEARCH_EVERY_S = 1.0   # seconds between full searches that keep finding nothing new
DETECT_EVERY_S = 0.5   # seconds between detector runs while faces are followed (newcomers show up this fast)


class SearchPacer:
    """Per-stream state: `search, turns = pacer.plan(t)`, `predict(..., search=search, turns=turns)`,
    then `pacer.seen(faces, t, searched, turns)`, where `searched` says whether the search ran (it was
    planned and `Landmarker.wants_search` held for the upright faces; `Tracker` works it out)."""

    def __init__(self, every_s: float = SEARCH_EVERY_S):
        self.every_s = every_s
        self.reset()

    def reset(self) -> None:
        self.last = None        # time of the last search that found nothing the upright pass missed
        self.last_full = None   # time of the last search of every turned copy
        self.needed = False     # the last frame's faces came from a turned copy
        self.turns: tuple[float, ...] = ()  # the copies the last frame's faces were found in

    def plan(self, t: float) -> tuple[bool, tuple[float, ...] | None]:
        """(search this frame?, the turns to search: None = all of them)."""
        search = self.needed or self.last is None or t - self.last >= self.every_s
        recent = self.last_full is not None and t - self.last_full < self.every_s
        return search, (self.turns if self.turns and recent else None)

    def seen(self, faces: Sequence[Face], t: float, searched: bool, turns: tuple[float, ...] | None = None) -> None:
        """`faces` of the frame at `t`; `searched`: the search of turned copies ran (it was planned and
        `Landmarker.wants_search` held), in `turns` (None = all of them)."""
        full = searched and turns is None
        if full:
            self.last_full = t
        self.turns = tuple(sorted({f.turn for f in faces if f.turn}))
        # a search narrowed to the last frame's copies that lost their faces (the head turned on):
        # search every copy on the next frame rather than wait for the next period
        self.needed = bool(self.turns) or (searched and not full)
        if full and not self.turns:
            self.last = t       # the search ran and found nothing the upright pass missed


class Tracker:
    """One stream's state: `faces = tracker(lm, frame, clock)` per frame.

    Between frames a face is followed, not searched for (`Landmarker.track`): the next frame is
    cropped from its last points, as the models were trained (the landmark box, eyes levelled), so
    the detector does not run and a head lying down costs one pass, not a search of turned copies.
    The detector runs when nothing is followed (with the search of turned copies, paced by
    `SearchPacer`), and every `detect_every_s` seconds to catch faces that came into view (only the
    boxes away from followed faces get model passes). A face the model stops believing (< its
    min_confidence) is dropped and the next look is the detector's. Models without a confidence of
    their own (the ResNet18 baseline) are never followed: nothing would say they lost the face
    (`follow=False`: the detector on every frame, as before following).
    The points are then smoothed (One-Euro, fkd.smoothing) at `strength` 0..1 (0 = raw), as the
    app's slider.

    `clock()` gives the stream's time in seconds, read before and after the landmarks: a webcam's is
    the wall clock (a slow frame is a long step for the filter), a video file's the frame's time."""

    def __init__(self, strength: float = 0.5, flip_test: FlipTest = "auto", detect_every_s: float = DETECT_EVERY_S,
                 follow: bool = True):
        self.strength, self.flip_test, self.detect_every_s, self.follow = strength, flip_test, detect_every_s, follow
        self.smoother = PointSmoother(min_cutoff=strength_to_cutoff(strength), beta=0.7)
        self.pacer = SearchPacer()
        self.reset()

    def reset(self) -> None:
        """A new stream, or another model: no face, track or search plan carries over."""
        self.smoother.reset()
        self.pacer.reset()
        self.faces: list[Face] = []      # the last frame's faces before smoothing: what the next is cropped from
        self.last_detect: float | None = None

    def __call__(self, lm: Landmarker, frame, clock: Callable[[], float]) -> list[Face]:
        now = clock()
        faces = lm.track(frame, self.faces, self.flip_test) if self.follow and self.faces and lm.has_confidence else []
        if not faces:
            search, turns = self.pacer.plan(now)
            faces = lm.predict(frame, flip_test=self.flip_test, search=search, turns=turns, small_faces=False)
            # with no face from a turned copy, `faces` are the upright pass's: what predict decided on
            searched = search and (any(f.turn for f in faces) or lm.wants_search(faces))
            self.pacer.seen(faces, clock(), searched, turns)
            self.last_detect = now
        elif self.last_detect is None or now - self.last_detect >= self.detect_every_s:
            found = [d for d in lm.detect(frame, small_faces=False) if not any(near(d.box, f) for f in faces)]
            new = lm.predict(frame, boxes=found, flip_test=self.flip_test, min_confidence=lm.min_confidence) if found else []
            faces = sorted(faces + new, key=lambda f: f.box[0])
            self.last_detect = now
        self.faces = faces
        if self.strength <= 0:
            self.smoother.reset()
            return faces
        self.smoother.configure(min_cutoff=strength_to_cutoff(self.strength))
        return self.smoother(faces, clock())
