"""Video streams: the search of turned copies runs where it can change the answer (SearchPacer), and
faces are followed from frame to frame with the detector only now and then (Tracker)."""
import cv2
import numpy as np
import pytest

from fkd.landmarker import Face, Settings
from fkd.stream import SearchPacer, Tracker

SEARCH_BELOW = Settings().search_below


def face(confidence: float, turn: float = 0.0) -> Face:
    return Face(box=np.zeros(4, np.float32), score=0.9, keypoints=np.zeros((68, 2)), confidence=confidence, turn=turn)


def test_a_doubted_upright_face_is_searched_once_per_period():
    p = SearchPacer(every_s=1.0)
    assert p.plan(0.0) == (True, None)
    p.seen([face(SEARCH_BELOW - 0.03)], 0.0, True, None)      # the full search ran and found nothing new
    assert not p.plan(0.1)[0] and not p.plan(0.99)[0]
    p.seen([face(SEARCH_BELOW - 0.03)], 0.5, False, None)     # a paced frame does not restart the clock
    assert p.plan(1.0) == (True, None)


def test_an_empty_view_is_searched_once_per_period():
    p = SearchPacer(every_s=1.0)
    p.seen([], 0.0, True, None)
    assert not p.plan(0.5)[0]
    p.seen([], 0.5, False, None)
    assert p.plan(1.0) == (True, None)


def test_while_the_search_finds_the_faces_it_runs_on_every_frame_in_their_copies():
    p = SearchPacer(every_s=1.0)
    p.seen([face(SEARCH_BELOW - 0.03)], 0.0, True, None)
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
    p.seen([face(SEARCH_BELOW - 0.03)], 0.0, True, None)
    p.seen([face(SEARCH_BELOW + 0.01)], 0.5, False, None)
    assert not p.plan(0.6)[0] and p.plan(1.0)[0]
    p.reset()
    assert p.plan(0.7) == (True, None)


# -----------------------------------------------------------------------------------------------
# Tracker: faces followed from frame to frame, the detector only now and then

def scene(faces_at: list[tuple[np.ndarray, int, int]], size=(480, 640)) -> np.ndarray:
    canvas = np.full((*size, 3), 90, np.uint8)
    for img, x, y in faces_at:
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
    return canvas


@pytest.fixture(scope="module")
def small_face(face_image):
    """The validation face at 220 px high, and its ground-truth points in that picture."""
    rgb, gt = face_image
    s = 220 / rgb.shape[0]
    img = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return img, gt * s + (s - 1) / 2


def counted(monkeypatch, lm) -> list[str]:
    """The detector runs of `lm` (predict runs it through lm.detect too): "whole", or "small" when
    the tiles for small faces are wanted (there are none on a 640×480 frame, but a 1280×720 one has)."""
    calls, whole, small = [], lm.detect, lm.detector.small_face_sides
    monkeypatch.setattr(lm, "detect", lambda rgb, *a, **k: calls.append("whole") or whole(rgb, *a, **k))
    monkeypatch.setattr(lm.detector, "small_face_sides", lambda w, h: calls.append("small") or small(w, h))
    return calls


def test_a_followed_face_needs_the_detector_twice_a_second_and_stays_on_the_face(landmarker, small_face, monkeypatch):
    img, gt = small_face
    calls = counted(monkeypatch, landmarker)
    tr = Tracker(strength=0.0, detect_every_s=0.5)
    for i in range(10):                                    # 10 frames per second, moving 6 px a frame
        t, dx = i / 10, 40 + 6 * i
        (f,) = tr(landmarker, scene([(img, dx, 80)]), lambda: t)
        err = np.linalg.norm(f.keypoints - (gt + [dx, 80]), axis=1).mean() / np.linalg.norm(gt[36] - gt[45])
        assert err < 0.06, (i, err)
        assert f.confidence >= landmarker.min_confidence
    assert calls == ["whole", "whole"]                     # t = 0 (nothing followed yet) and t = 0.5;
                                                           # never the small-face tiles (a video frame)


def test_a_face_that_jumps_between_frames_gets_a_second_pass_on_its_new_crop(landmarker, small_face):
    """Fast motion: a face a quarter of its width away from where the last frame had it sits off the
    crop cut from its last points; a second pass on the crop of its new points keeps it on the face
    (with one pass, the points trailed the face: 4.4 % NME by the third frame)."""
    from fkd.geometry import box_side, landmark_box
    img, gt = small_face
    step = int(0.25 * box_side(landmark_box(gt)))
    tr = Tracker(strength=0.0, detect_every_s=10.0)       # followed on every frame after the first
    for i in range(6):
        dx = 20 + step * i
        (f,) = tr(landmarker, scene([(img, dx, 80)]), lambda: i / 30)
        err = np.linalg.norm(f.keypoints - (gt + [dx, 80]), axis=1).mean() / np.linalg.norm(gt[36] - gt[45])
        assert err < 0.04, (i, err)


def test_a_face_that_leaves_is_dropped_at_once_and_a_newcomer_found_at_the_next_look(landmarker, small_face,
                                                                                       monkeypatch):
    img, _ = small_face
    calls = counted(monkeypatch, landmarker)
    tr = Tracker(strength=0.5, detect_every_s=0.5)
    mirrored = np.ascontiguousarray(img[:, ::-1])
    counts = []
    for i in range(8):
        t = i / 10
        people = [(img, 20, 100)] + ([(mirrored, 340, 100)] if i >= 2 else [])   # a second face at t = 0.2
        counts.append(len(tr(landmarker, scene(people), lambda: t)))
    assert counts == [1, 1, 1, 1, 1, 2, 2, 2]              # found at the detector's look at t = 0.5
    assert len(calls) == 2
    assert tr(landmarker, scene([]), lambda: 0.8) == []    # both gone: dropped on that frame
    assert len(calls) == 3 and tr.faces == []              # and the detector looked


def test_a_model_without_a_confidence_is_never_followed(small_face, monkeypatch):
    from fkd.landmarker import Landmarker
    img, _ = small_face
    lm = Landmarker("face68_baseline")
    assert not lm.has_confidence
    calls = counted(monkeypatch, lm)
    tr = Tracker()
    for i in range(4):
        assert len(tr(lm, scene([(img, 40 + 5 * i, 80)]), lambda: i / 10)) == 1
    assert len(calls) == 4                                 # nothing says it lost the face: detect every frame
    lm.close()
