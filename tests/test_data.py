import re

import numpy as np
import pytest
from conftest import IMM, W300

from fkd.data import (find_300w, find_imm, read_asf, read_dlib_xml, read_pts, split_300w, split_imm,
                      write_pts)


def first_pts():
    return sorted(W300.rglob("*.pts"))[0]


def test_read_pts_is_zero_based():
    path = first_pts()
    raw = [ln.split() for ln in path.read_text().splitlines()[3:71]]
    pts = read_pts(path)
    assert pts.shape == (68, 2)
    assert pts[0, 0] == pytest.approx(float(raw[0][0]) - 1)
    assert pts[67, 1] == pytest.approx(float(raw[67][1]) - 1)


def test_pts_roundtrip(tmp_path):
    pts = read_pts(first_pts())
    write_pts(tmp_path / "a.pts", pts)
    assert np.allclose(read_pts(tmp_path / "a.pts"), pts, atol=1e-3)
    assert (tmp_path / "a.pts").read_text().startswith("version: 1\nn_points:  68\n{")


def test_pts_without_header_and_with_wrong_count(tmp_path):
    (tmp_path / "h.pts").write_text("1 2\n3 4\n")
    assert read_pts(tmp_path / "h.pts").tolist() == [[0, 1], [2, 3]]
    (tmp_path / "bad.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    with pytest.raises(ValueError, match="68 points"):
        read_pts(tmp_path / "bad.pts")
    (tmp_path / "junk.pts").write_text("hello world\n")
    with pytest.raises(ValueError, match="junk.pts"):
        read_pts(tmp_path / "junk.pts")


def test_read_asf_and_imm_pixels():
    rel, host = read_asf(IMM / "04-1m.asf")
    assert rel.shape == (58, 2) and host.endswith(".bmp")
    assert (rel > 0).all() and (rel < 1).all()
    recs, problems = find_imm(IMM)
    r = next(r for r in recs if r.image.name == "04-1m.jpg")
    assert np.allclose(r.points, rel * [640, 480])
    assert problems == []


def test_imm_split_is_by_person():
    recs, _ = find_imm(IMM)
    train, val = split_imm(recs)
    assert {r.person for r in train} == {"04", "05", "06", "07"}
    assert {r.person for r in val} == {"33", "34"}


def test_find_300w_skips_unlabelled_and_wrong_counts(tmp_path):
    import shutil
    src = first_pts()
    shutil.copy(src.with_suffix(".jpg"), tmp_path / "ok.jpg")
    shutil.copy(src, tmp_path / "ok.pts")
    shutil.copy(src.with_suffix(".jpg"), tmp_path / "nolabel.jpg")
    shutil.copy(src.with_suffix(".jpg"), tmp_path / "short.jpg")
    (tmp_path / "short.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n")
    recs, problems = find_300w(tmp_path)
    assert [r.image.name for r in recs] == ["ok.jpg"]
    assert len(problems) == 2
    assert any("nolabel.jpg: no .pts" in p for p in problems)
    assert any("2 points, expected 68" in p for p in problems)


def test_find_300w_and_predict_follow_symlinked_folders(tmp_path):
    """A data folder made of links to the real subsets (rglob does not follow them): each face once,
    and a link back up the tree does not loop."""
    import shutil
    from fkd.predict import _images_in
    src = first_pts()
    real = tmp_path / "real" / "helen"
    real.mkdir(parents=True)
    shutil.copy(src.with_suffix(".jpg"), real / "a.jpg")
    shutil.copy(src, real / "a.pts")
    data = tmp_path / "data"
    data.mkdir()
    (data / "helen").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(data, target_is_directory=True)  # helen/loop -> data -> helen ...
    recs, problems = find_300w(data)
    assert [r.image for r in recs] == [data / "helen" / "a.jpg"] and problems == []
    assert _images_in(data) == [str(data / "helen" / "a.jpg")]
    # a link beside a real folder never takes its files (the split is by path), whatever its name
    # sorts or os.walk lists first; a hidden folder's copies are left out
    for name in ("a_link", "helen_old", "zz"):
        (real.parent / name).symlink_to(real, target_is_directory=True)
    (real.parent / ".ipynb_checkpoints").mkdir()
    shutil.copy(src.with_suffix(".jpg"), real.parent / ".ipynb_checkpoints" / "b.jpg")
    shutil.copy(src, real.parent / ".ipynb_checkpoints" / "b.pts")
    recs, problems = find_300w(real.parent)
    assert [r.image for r in recs] == [real / "a.jpg"] and problems == []


def test_dlib_xml(tmp_path):
    import shutil
    src = first_pts()
    shutil.copy(src.with_suffix(".jpg"), tmp_path / "a.jpg")
    pts = read_pts(src)
    parts = "".join(f"<part name='{i:02d}' x='{x:.0f}' y='{y:.0f}'/>" for i, (x, y) in enumerate(pts))
    (tmp_path / "labels.xml").write_text(
        f"<dataset><images><image file='a.jpg'><box top='10' left='20' width='100' height='90'>{parts}</box>"
        "</image></images></dataset>")
    recs = read_dlib_xml(tmp_path / "labels.xml")
    assert len(recs) == 1 and recs[0].points.shape == (68, 2)
    assert recs[0].box.tolist() == [20, 10, 120, 100]
    assert np.allclose(recs[0].points, np.round(pts))
    found, problems = find_300w(tmp_path)
    assert len(found) == 1 and problems == [f"{tmp_path / 'a.jpg'}: no .pts beside it"]


def test_300w_split_uses_committed_list_and_never_shares_an_image():
    recs, _ = find_300w(W300)
    train, val = split_300w(recs, W300)
    assert len(train) >= 3 and len(val) >= 4
    assert not ({r.person for r in train} & {r.person for r in val})


@pytest.mark.parametrize("value, shown", [("nan", "nan"), ("inf", "inf"), ("-Infinity", "-inf"), ("1e39", "1e+39")])
def test_a_coordinate_that_is_not_a_finite_number_names_the_file_and_point(tmp_path, value, shown):
    """1e39 is finite in the file but not in float32, where points are kept."""
    pts = tmp_path / "face.pts"
    pts.write_text(f"version: 1\nn_points: 3\n{{\n1 2\n3 {value}\n5 6\n}}\n")
    with pytest.raises(ValueError, match=re.escape(f"face.pts: point 2 is not a finite number (3 {shown})")):
        read_pts(pts)
    lines = (IMM / "04-1m.asf").read_text().splitlines()
    first = next(i for i, ln in enumerate(lines) if len(ln.split()) == 7)  # the first point's line
    cols = lines[first].split()
    lines[first] = " ".join(cols[:2] + [value] + cols[3:])
    (tmp_path / "04-1m.asf").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"04-1m.asf: point 1 is not a finite number ({shown} ")):
        read_asf(tmp_path / "04-1m.asf")


def test_find_300w_skips_a_face_with_a_nan_and_keeps_the_rest(tmp_path):
    import shutil
    src = first_pts()
    for name in ("a", "b"):
        shutil.copy(src.with_suffix(".jpg"), tmp_path / f"{name}.jpg")
    shutil.copy(src, tmp_path / "a.pts")
    good = read_pts(src)
    parts = lambda pts: "".join(f"<part name='{i:02d}' x='{x}' y='{y}'/>" for i, (x, y) in enumerate(pts))  # noqa: E731
    bad = good.astype(object)
    bad[5, 1] = "nan"
    (tmp_path / "labels.xml").write_text(
        "<dataset><images><image file='b.jpg'>"
        f"<box top='10' left='20' width='100' height='90'>{parts(bad)}</box>"
        f"<box top='10' left='20' width='100' height='90'>{parts(good + 30)}</box></image></images></dataset>")
    (tmp_path / "c.pts").write_text("{\n" + "\n".join("inf 1" if i == 67 else "1 1" for i in range(68)) + "\n}\n")
    shutil.copy(src.with_suffix(".jpg"), tmp_path / "c.jpg")
    recs, problems = find_300w(tmp_path)
    assert sorted(r.image.name for r in recs) == ["a.jpg", "b.jpg"]  # b's second face stays
    assert all(np.isfinite(r.points).all() for r in recs)
    assert sorted(problems) == [f"{tmp_path / 'b.jpg'}: no .pts beside it",  # only the XML labels it
                                f"{tmp_path / 'c.pts'}: point 68 is not a finite number (inf 1)",
                                f"{tmp_path / 'labels.xml'}: face 1 of b.jpg: point 6 is not a finite number"
                                f" ({good[5, 0]:g} nan)"]


@pytest.mark.parametrize("part", ["<part name='00' x='abc' y='2'/>", "<part name='00' y='2'/>", "<part x='1' y='2'/>"])
def test_dlib_xml_without_numbers_is_skipped_by_name(tmp_path, part):
    (tmp_path / "labels.xml").write_text("<dataset><images><image file='a.jpg'><box top='1' left='2' width='3' "
                                         f"height='4'>{part}</box></image></images></dataset>")
    message = (f"{tmp_path / 'labels.xml'}: face 1 of <image file='a.jpg'>: expected numbers in "
               "<box top left width height> and <part name x y>")
    with pytest.raises(ValueError) as e:
        read_dlib_xml(tmp_path / "labels.xml")
    assert str(e.value) == message
    assert find_300w(tmp_path) == ([], [message])
