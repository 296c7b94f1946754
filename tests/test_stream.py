"""SearchPacer: on a video stream, the search of turned copies runs where it can change the answer."""
import numpy as np

from fkd.landmarker import SURE, Face
from fkd.stream import SearchPacer


def face(confidence: float, turn: float = 0.0) -> Face:
    return Face(box=np.zeros(4, np.float32), score=0.9, keypoints=np.zeros((68, 2)), confidence=confidence, turn=turn)


def test_a_doubted_upright_face_is_searched_once_per_period():
    p = SearchPacer(every_s=1.0)
    assert p.plan(0.0) == (True, None)
    p.seen([face(SURE - 0.03)], 0.0, True, None)      # the full search ran and found nothing new
    assert not p.plan(0.1)[0] and not p.plan(0.99)[0]
    p.seen([face(SURE - 0.03)], 0.5, False, None)     # a paced frame does not restart the clock
    assert p.plan(1.0) == (True, None)


def test_an_empty_view_is_searched_once_per_period():
    p = SearchPacer(every_s=1.0)
    p.seen([], 0.0, True, None)
    assert not p.plan(0.5)[0]
    p.seen([], 0.5, False, None)
    assert p.plan(1.0) == (True, None)


def test_while_the_search_finds_the_faces_it_runs_on_every_frame_in_their_copies():
    p = SearchPacer(every_s=1.0)
    p.seen([face(SURE - 0.03)], 0.0, True, None)
    p.seen([face(0.99, turn=90.0), face(0.98, turn=-45.0)], 1.0, True, None)  # heads past the upright detector
    assert p.plan(1.1) == (True, (-45.0, 90.0))       # only the copies they were found in
    p.seen([face(0.99, turn=90.0)], 1.1, True, (-45.0, 90.0))
    assert p.plan(1.2) == (True, (90.0,))
    assert p.plan(2.0) == (True, None)                # a full search once per period, for new faces
    p.seen([], 1.2, True, (90.0,))                    # the head turned on, out of its copy
    assert p.plan(1.3) == (True, None)                # every copy at once, not a second later
    p.seen([], 1.3, True, None)
    assert not p.plan(1.4)[0]                         # nothing anywhere: paced again


def test_a_sure_face_leaves_the_clock_alone_and_reset_starts_over():
    p = SearchPacer(every_s=1.0)
    p.seen([face(SURE - 0.03)], 0.0, True, None)
    p.seen([face(SURE + 0.01)], 0.5, False, None)
    assert not p.plan(0.6)[0] and p.plan(1.0)[0]
    p.reset()
    assert p.plan(0.7) == (True, None)
