"""Video files: fkd.media reads and writes them, fkd.video puts keypoints on every frame."""
import json
import subprocess
import sys

import cv2
import imageio.v3 as iio
import numpy as np
import pytest

from conftest import ROOT

from fkd import Landmarker
from fkd.io import ImageError, load_image
from fkd.media import read_video, write_mp4
from fkd.video import track_video

PHOTO = ROOT / "tests" / "fixtures" / "data" / "300w" / "afw" / "2086996835_3.jpg"


def clip_frames(n: int, step: int = 2, noise: float = 0.0, seed: int = 0) -> list[np.ndarray]:
    """n 320×240 frames of the fixture face moving right by `step` px a frame, with pixel noise."""
    rgb = load_image(PHOTO)
    s = 200 / rgb.shape[0]
    face = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)[:, :220]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = np.full((240, 320, 3), 90, np.uint8)
        f[20:20 + face.shape[0], 10 + step * i:10 + step * i + face.shape[1]] = face
        if noise:
            f = np.clip(f + rng.normal(0, noise, f.shape), 0, 255).astype(np.uint8)
        out.append(f)
    return out


@pytest.fixture(scope="module")
def lm():
    lm = Landmarker()
    yield lm
    lm.close()


def test_frames_written_are_read_back_at_their_rate(tmp_path):
    frames = clip_frames(7)
    path = write_mp4(tmp_path / "c.mp4", (f for f in frames), 12.5)  # a generator: streamed
    fps, back = read_video(path)
    back = list(back)
    assert fps == 12.5 and len(back) == 7 and back[0].shape == (240, 320, 3) and back[0].dtype == np.uint8
    assert np.abs(back[3].astype(float) - frames[3]).mean() < 6


def test_what_is_not_a_video_says_so(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for path, words in ((tmp_path / "notes.mp4", "cannot be read as a video"), (tmp_path / "empty.mp4", "empty"),
                        (tmp_path / "missing.mp4", "no such file"), (tmp_path, "is a folder")):
        with pytest.raises(ImageError, match=words):
            read_video(path)


def test_a_video_cut_short_gives_its_frames_then_says_so(tmp_path):
    import imageio_ffmpeg
    rng = np.random.default_rng(0)  # noise: a file big enough to cut through its frames
    src = write_mp4(tmp_path / "noise.mp4", (rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(60)), 20)
    fast = tmp_path / "fast.mp4"    # the header first, as phones and web exports write it
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(src), "-movflags", "+faststart",
                    "-c", "copy", str(fast)], check=True, capture_output=True, timeout=120)
    data = fast.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    fps, frames = read_video(tmp_path / "cut.mp4")
    got = []
    with pytest.raises(ImageError, match=r"stops early \(\d+ of about 60 frames"):
        for f in frames:
            got.append(f)
    assert 10 < len(got) < 50
    assert sum(1 for _ in read_video(fast)[1]) == 60   # the whole file: no complaint


def test_a_video_whose_frame_rate_varies_keeps_its_duration_and_any_extension_reads(tmp_path):
    import imageio_ffmpeg
    src = write_mp4(tmp_path / "even.mp4", clip_frames(30), 10)
    vfr = tmp_path / "phone.3gp"   # frames 0.1 s apart, then 0.5 s apart: 10.5 s of video
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(src), "-vf",
                    "setpts='if(lt(N,10),N*0.1,1+(N-10)*0.5)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-f", "mp4", str(vfr)], check=True, capture_output=True, timeout=120)
    fps, frames = read_video(vfr)
    n = sum(1 for _ in frames)
    assert abs(n / fps - 10.5) < 1.0, (n, fps)   # frame i at i / fps: the clock of the smoothing is right


def test_without_smoothing_each_frame_gets_about_the_photo_answer(lm):
    frames = clip_frames(4)
    tracked = list(track_video(lm, iter(frames), 10.0, strength=0.0))
    assert [(i, t) for i, t, _, _ in tracked] == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 0.3)]
    for (i, _, frame, faces), f in zip(tracked, frames):
        ref = lm.predict(f)
        assert len(faces) == len(ref) == 1
        if i == 0:  # found by the detector, as in a photo
            np.testing.assert_allclose(faces[0].keypoints, ref[0].keypoints, atol=1e-4)
        else:       # followed from the frame before: cropped on its landmark box instead
            eyes = np.linalg.norm(ref[0].keypoints[36] - ref[0].keypoints[45])
            assert np.linalg.norm(faces[0].keypoints - ref[0].keypoints, axis=1).mean() < 0.015 * eyes
    # the face moved 2 px a frame to the right, and so did its points
    shift = tracked[3][3][0].keypoints.mean(0) - tracked[0][3][0].keypoints.mean(0)
    assert abs(shift[0] - 6) < 1.5 and abs(shift[1]) < 1.5


def test_smoothing_holds_a_still_noisy_face_steadier(lm):
    frames = clip_frames(15, step=0, noise=10.0)
    def spread(strength):
        pts = np.stack([faces[0].keypoints for *_, faces in track_video(lm, iter(frames), 30.0, strength)])
        return float(pts[5:].std(0).mean())  # after the filter has settled
    raw, smooth = spread(0.0), spread(0.8)
    assert raw > 0.05 and smooth < 0.5 * raw, (raw, smooth)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fkd.video", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_video_cli_draws_every_frame_and_writes_the_points(tmp_path):
    src = write_mp4(tmp_path / "clip.mp4", clip_frames(6), 15)
    p = run_cli(str(src), "--json", str(tmp_path / "p.json"))
    assert p.returncode == 0, p.stderr
    out = tmp_path / "clip_keypoints.mp4"
    drawn, plain = iio.imread(out), np.stack(list(read_video(src)[1]))
    assert drawn.shape == plain.shape == (6, 240, 320, 3) and iio.immeta(out).get("codec") == "h264"
    assert np.abs(drawn.astype(float) - plain).mean() > 0.5  # the points are drawn in
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["fps"] == 15 and [f["frame"] for f in d["frames"]] == list(range(6))
    assert all(len(f["faces"]) == 1 and len(f["faces"][0]["keypoints"]) == 68 for f in d["frames"])
    assert "6 frames (6 with a face)" in p.stderr


def test_video_cli_refuses_bad_input_with_a_message(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    p = run_cli(str(bad))
    assert p.returncode == 1 and "cannot be read as a video" in p.stderr and "Traceback" not in p.stderr
    src = write_mp4(tmp_path / "clip.mp4", clip_frames(2), 15)
    p = run_cli(str(src), "--out", str(src))
    assert p.returncode == 2 and "overwrite" in p.stderr
    p = run_cli(str(src), "--out", str(tmp_path / "clip.webm"))
    assert p.returncode == 2 and "must be an .mp4 file" in p.stderr and not (tmp_path / "clip.webm").exists()
    p = run_cli(str(src), "--max-frames", "-1")
    assert p.returncode == 2 and "must be at least 1" in p.stderr and "Traceback" not in p.stderr
    for value in ("nan", "5", "-1"):
        p = run_cli(str(src), "--smoothing", value, "--out", "-")
        assert p.returncode == 2 and "must be between 0 and 1" in p.stderr and "Traceback" not in p.stderr, value
    before = src.read_bytes()
    p = run_cli(str(src), "--out", "-", "--json", str(src))            # the JSON would overwrite the video
    assert p.returncode == 2 and "would overwrite an input" in p.stderr and src.read_bytes() == before
    p = run_cli(str(src), "--json", str(tmp_path))                      # a folder
    assert p.returncode == 2 and "is a folder" in p.stderr
    p = run_cli(str(src), "--out", str(tmp_path / "x.mp4"), "--json", str(tmp_path / "x.mp4"))
    assert p.returncode == 2 and "the same file" in p.stderr


def test_a_phone_video_comes_upright_without_a_notice(tmp_path, caplog):
    """A video whose metadata says 'turn 90°' (as phones write them) is read turned; imageio-ffmpeg's
    warning that the frame size differs from the source's is that turn, not a problem to report."""
    import logging

    import imageio_ffmpeg
    src = write_mp4(tmp_path / "clip.mp4", clip_frames(2), 15)
    rot = tmp_path / "phone.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(src),
                    "-c", "copy", str(rot)], check=True)
    with caplog.at_level(logging.WARNING):
        frames = list(read_video(rot)[1])
    assert frames[0].shape == (320, 240, 3)  # 320×240 stored, 240×320 shown
    assert not [r for r in caplog.records if "frame size" in r.getMessage()], caplog.records
