"""SearchPacer: on a video stream, the search of turned copies runs where it can change the answer."""
import numpy as np

from fkd.landmarker import SURE, Face
from fkd.stream import SearchPacer


def face(confidence: float, turn: float = 0.0) -> Face:
    return Face(box=np.zeros(4, np.float32), score=0.9, keypoints=np.zeros((68, 2)), confidence=confidence, turn=turn)


def test_a_doubted_upright_face_is_searched_once_per_period():
    p = SearchPacer(every_s=1.0)
    assert p.due(0.0)
    p.seen([face(SURE - 0.03)], 0.0, searched=True)    # the search ran and found nothing new
    assert not p.due(0.1) and not p.due(0.99)
    p.seen([face(SURE - 0.03)], 0.5, searched=False)   # a paced frame does not restart the clock
    assert p.due(1.0)


def test_the_search_keeps_running_while_it_is_what_finds_the_faces():
    p = SearchPacer(every_s=1.0)
    p.seen([face(SURE - 0.03)], 0.0, searched=True)
    p.seen([face(0.99, turn=90.0)], 0.1, searched=True)  # the head turned past the upright detector
    assert p.due(0.2)
    p.seen([], 0.2, searched=True)                       # nothing at all: keep looking
    assert p.due(0.3)


def test_a_sure_face_leaves_the_clock_alone_and_reset_starts_over():
    p = SearchPacer(every_s=1.0)
    p.seen([face(SURE - 0.03)], 0.0, searched=True)
    p.seen([face(SURE + 0.01)], 0.5, searched=False)
    assert not p.due(0.6) and p.due(1.0)
    p.reset()
    assert p.due(0.7)
