"""fkd.evaluate as a user meets it: one output per face, each face once, mistakes refused before the run."""
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import IMM, W300
from fkd import evaluate
from fkd.data import read_pts

FACE_A = W300 / "lfpw" / "trainset" / "image_0105"   # 186 x 185
FACE_B = W300 / "afw" / "2086996835_3"               # 277 x 277
ALONE = W300 / "lfpw" / "trainset" / "image_0286"


def write_xml(path, faces):
    """A dlib XML (as in ibug_300W_large_face_landmark_dataset) of (image file name, points) faces."""
    images = []
    for name, pts in faces:
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        parts = "".join(f"<part name='{i:02d}' x='{x:.2f}' y='{y:.2f}'/>" for i, (x, y) in enumerate(pts))
        images.append(f"<image file='{name}'><box top='{y0:.0f}' left='{x0:.0f}' width='{x1 - x0:.0f}' "
                      f"height='{y1 - y0:.0f}'>{parts}</box></image>")
    path.write_text("<dataset><images>" + "".join(images) + "</images></dataset>")


def copy_face(stem, folder):
    shutil.copy(stem.with_suffix(".jpg"), folder)
    shutil.copy(stem.with_suffix(".pts"), folder)


def no_inference(*args, **kwargs):
    raise AssertionError("the run started although the command was refused")


def test_pts_and_csv_name_each_face_of_an_image(tmp_path):
    # one photo holding two faces side by side (labelled in an XML), and a photo of one face (.pts)
    data = tmp_path / "data"
    data.mkdir()
    a, b = cv2.imread(str(FACE_A.with_suffix(".jpg"))), cv2.imread(str(FACE_B.with_suffix(".jpg")))
    two = np.zeros((max(a.shape[0], b.shape[0]), a.shape[1] + b.shape[1], 3), np.uint8)
    two[: a.shape[0], : a.shape[1]] = a
    two[: b.shape[0], a.shape[1]:] = b
    cv2.imwrite(str(data / "two.jpg"), two)
    gt = [read_pts(FACE_A.with_suffix(".pts")), read_pts(FACE_B.with_suffix(".pts")) + [a.shape[1], 0]]
    write_xml(data / "labels.xml", [("two.jpg", gt[0]), ("two.jpg", gt[1])])
    copy_face(ALONE, data)

    out, csv = tmp_path / "pts", tmp_path / "preds.csv"
    rc = evaluate.main([str(data), "--box", "landmarks", "--flip-test", "off", "--pts", str(out),
                        "--export-csv", str(csv)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["image_0286.pts", "two_face1.pts", "two_face2.pts"]
    for k, g in enumerate(gt, 1):  # face k's file holds face k's points, not the other face's
        side = np.ptp(g, axis=0).max()
        assert np.linalg.norm(read_pts(out / f"two_face{k}.pts") - g, axis=1).mean() < 0.2 * side

    lines = csv.read_text().splitlines()
    assert lines[0].startswith("image,face,x0,y0,")
    assert sorted(tuple(ln.split(",")[:2]) for ln in lines[1:]) == [
        ("image_0286.jpg", "1"), ("two.jpg", "1"), ("two.jpg", "2")]
    assert all(len(ln.split(",")) == 2 + 2 * 68 for ln in lines)


def test_face_labelled_by_pts_and_xml_counts_once(tmp_path):
    for stem in (FACE_A, FACE_B):
        copy_face(stem, tmp_path)
    shutil.copy(ALONE.with_suffix(".jpg"), tmp_path)  # no .pts: only an XML labels it
    a, b, c = (read_pts(s.with_suffix(".pts")) for s in (FACE_A, FACE_B, ALONE))
    # the XMLs repeat the .pts faces (rounded, or 1-based) and each other, as 300-W "large" does;
    # a second face in image A (40 px away) is another face and must stay
    write_xml(tmp_path / "all.xml", [(FACE_A.name + ".jpg", np.round(a)), (ALONE.name + ".jpg", c)])
    write_xml(tmp_path / "train.xml", [(FACE_A.name + ".jpg", a + 1), (FACE_B.name + ".jpg", np.round(b)),
                                       (ALONE.name + ".jpg", c), (FACE_A.name + ".jpg", a + [40, 0])])

    records, problems = evaluate.load_folder(tmp_path, 68)
    assert problems == []  # the image without a .pts was scored through the XML, not skipped
    assert sorted((r.image.name, r.meta["nth_face"], r.meta["image_faces"]) for r in records) == [
        ("2086996835_3.jpg", 1, 1), ("image_0105.jpg", 1, 2), ("image_0105.jpg", 2, 2), ("image_0286.jpg", 1, 1)]
    first_a = next(r for r in records if r.image.name == "image_0105.jpg")
    assert np.array_equal(first_a.points, a)  # the .pts (sub-pixel) is the copy kept


@pytest.mark.parametrize("folder, model, right", [(IMM, "face68_accurate", "imm58"), (W300, "imm58", evaluate.DEFAULT_MODEL)])
def test_model_must_fit_the_points_before_inference(monkeypatch, capsys, folder, model, right):
    monkeypatch.setattr(evaluate, "evaluate_records", no_inference)
    rc = evaluate.main([str(folder), "--model", model, "--box", "landmarks"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error:") and f"--model {right}" in err[0]


@pytest.mark.parametrize("flag, target", [
    ("--json", "folder"), ("--export-csv", "folder"), ("--json", "file/m.json"), ("--pts", "file"),
    ("--pts", "file/out"), ("--ced", "ced_noext"), ("--ced", "folder"), ("--ced", "file/c.png")])
def test_bad_output_refused_before_the_run(monkeypatch, capsys, tmp_path, flag, target):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(evaluate, "evaluate_records", no_inference)
    monkeypatch.setattr("fkd.predict.open_landmarker", no_inference)
    rc = evaluate.main([str(W300), "--box", "landmarks", flag, str(tmp_path / target)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"error: {flag} {tmp_path / target}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


def test_a_file_instead_of_the_folder_is_named_as_such(capsys, tmp_path):
    photo = tmp_path / "face.jpg"
    photo.write_bytes(b"x")
    assert evaluate.main([str(photo)]) == 2
    assert f"{photo}: is a file: give the folder that holds the images and their labels" in capsys.readouterr().err
    assert evaluate.main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err


def test_save_png_raises_when_nothing_is_written(tmp_path):
    from fkd.viz import save_png

    rgb = np.zeros((8, 8, 3), np.uint8)
    (tmp_path / "file").write_text("not a folder")
    for bad in (tmp_path / "file" / "x.png", tmp_path / "noext"):
        with pytest.raises(OSError, match=str(bad)):
            save_png(bad, rgb)
    save_png(tmp_path / "ok.png", rgb)
    assert cv2.imread(str(tmp_path / "ok.png")).shape == (8, 8, 3)


@pytest.mark.parametrize("limit", ["-1", "0", "two"])
def test_limit_below_one_is_refused(capsys, limit):
    with pytest.raises(SystemExit) as e:
        evaluate.get_args_parser().parse_args([str(W300), "--limit", limit])
    assert e.value.code == 2 and "--limit" in capsys.readouterr().err
    assert evaluate.get_args_parser().parse_args([str(W300), "--limit", "3"]).limit == 3


@pytest.mark.parametrize("place", [shutil.copy, os.symlink])
def test_same_file_name_in_two_subfolders_keeps_both(tmp_path, place):
    """300-W's "large" layout has lfpw/trainset/image_0001.jpg and lfpw/testset/image_0001.jpg: the
    outputs follow the subfolders, so neither overwrites the other (also in a folder of symlinks)."""
    data = tmp_path / "data"
    for sub, face in (("trainset", FACE_A), ("testset", ALONE)):
        (data / sub).mkdir(parents=True)
        place(face.with_suffix(".jpg"), data / sub / "image_0001.jpg")
        place(face.with_suffix(".pts"), data / sub / "image_0001.pts")
    out = tmp_path / "pts"
    rc = evaluate.main([str(data), "--box", "landmarks", "--pts", str(out), "--export-csv", str(tmp_path / "p.csv")])
    assert rc == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pts")) == [
        "testset/image_0001.pts", "trainset/image_0001.pts"]
    for sub, face in (("trainset", FACE_A), ("testset", ALONE)):  # each file holds its own face
        assert np.abs(read_pts(out / sub / "image_0001.pts") - read_pts(face.with_suffix(".pts"))).mean() < 5
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == ["testset/image_0001.jpg", "trainset/image_0001.jpg"]


def test_outputs_never_overwrite_the_data_being_scored(monkeypatch, capsys, tmp_path):
    """--pts mirrors the folder's layout: pointed at the folder itself it would replace every label."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    copy_face(ALONE, data / "sub")
    label = (data / "sub" / "image_0286.pts").read_bytes()
    monkeypatch.setattr(evaluate, "evaluate_records", no_inference)
    for flags, words in ((["--pts", str(data)], "would overwrite the labels"),
                         (["--json", str(data / "sub" / "image_0286.pts")], "would overwrite the data"),
                         (["--json", str(tmp_path / "m"), "--export-csv", str(tmp_path / "m")], "name the same file")):
        assert evaluate.main([str(data), "--box", "landmarks", *flags]) == 2, flags
        assert words in capsys.readouterr().err, flags
    assert (data / "sub" / "image_0286.pts").read_bytes() == label
