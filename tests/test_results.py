"""fkd.results: the one export format (JSON, CSV, .pts) of the app and the CLIs, and box parsing."""
import csv
import io
import json

import numpy as np
import pytest

from fkd import results
from fkd.data import read_pts
from fkd.landmarker import Face


def face(shift=0.0, confidence=0.9):
    pts = np.array([[10.0, 20.0], [30.5, 40.25], [50.0, 60.0]]) + shift
    return Face(box=np.array([5.0, 15.0, 55.0, 65.0]) + shift, score=0.8, keypoints=pts, confidence=confidence)


def test_json_is_valid_even_without_a_confidence():
    record = results.image_record([face(), face(1, confidence=float("nan"))], "me.jpg", (640, 480), "face68_accurate")
    text = results.dumps(record)
    back = json.loads(text)   # Python reads NaN; a browser's JSON.parse does not: there must be none
    assert "NaN" not in text and back["faces"][1]["confidence"] is None
    assert (back["width"], back["height"], back["model"]) == (640, 480, "face68_accurate")
    assert back["faces"][0]["keypoints"][1] == [30.5, 40.25]
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant: inf"):
        results.dumps({"x": float("inf")})


def test_csv_has_one_row_per_face_and_quotes_odd_names():
    text = results.csv_text([("a,b.jpg", 1, face().keypoints), ("c.jpg", 2, face(1).keypoints)])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["image", "face", "x0", "y0", "x1", "y1", "x2", "y2"]
    assert rows[1][:2] == ["a,b.jpg", "1"] and rows[2][:2] == ["c.jpg", "2"]
    np.testing.assert_allclose(np.array(rows[2][2:], float).reshape(3, 2), face(1).keypoints, atol=0.005)
    with pytest.raises(ValueError, match="same number of points"):
        results.csv_text([("a.jpg", 1, np.zeros((3, 2))), ("a.jpg", 2, np.zeros((5, 2)))])


def test_downloads_agree_with_each_other(tmp_path):
    faces = [face(), face(100)]
    record = results.image_record(faces, "two.jpg", (300, 300), "face68_accurate")
    files = results.write_downloads(tmp_path, "two", faces, record)
    assert [f.name for f in files] == ["two_face1.pts", "two_face2.pts", "two_keypoints.json", "two_keypoints.csv"]
    for k, f in enumerate(faces):
        np.testing.assert_allclose(read_pts(files[k]), f.keypoints, atol=1e-3)   # .pts is 1-based, read back 0-based
    assert json.loads(files[2].read_text()) == record
    rows = files[3].read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith("two.jpg,2,110.00,120.00,")


def test_boxes_from_text_and_from_the_canvas():
    assert results.parse_boxes("") is None and results.parse_boxes("[1, 2, 3, 4]") == [[1, 2, 3, 4]]
    for bad, words in (("[[1, 2", "JSON"), ("[[1, 2, 3]]", "four numbers"), ("[]", "non-empty"), ('{"a": 1}', "non-empty")):
        with pytest.raises(ValueError, match=words):
            results.parse_boxes(bad)
    canvas = {"image": np.zeros((50, 80, 3)), "boxes": [{"xmin": 40, "ymin": 1, "xmax": 60, "ymax": 9},
                                                         {"xmin": 5, "ymin": 2, "xmax": 20, "ymax": 8}]}
    boxes, width = results.annotation_boxes(canvas)
    assert width == 80 and [b[0] for b in boxes] == [5, 40]          # left to right
    with pytest.raises(ValueError, match="Draw at least one box"):
        results.annotation_boxes({"image": canvas["image"], "boxes": []})


def test_predict_cli_writes_the_same_json_and_csv(tmp_path):
    """fkd.predict --json/--csv: the app's record per image, and the CSV layout of fkd.evaluate --export-csv."""
    from conftest import W300
    from fkd import predict
    img = sorted(W300.rglob("*.jpg"))[0]
    out, table = tmp_path / "p.json", tmp_path / "p.csv"
    assert predict.main([str(img), "--json", str(out), "--csv", str(table), "--flip-test", "off"]) == 0
    (rec,) = json.loads(out.read_text())
    from PIL import Image
    assert (rec["image"], (rec["width"], rec["height"])) == (str(img), Image.open(img).size) and rec["faces"]
    rows = list(csv.reader(io.StringIO(table.read_text())))
    assert rows[0][:4] == ["image", "face", "x0", "y0"] and len(rows) == 1 + len(rec["faces"])
    np.testing.assert_allclose(np.array(rows[1][2:], float).reshape(-1, 2), rec["faces"][0]["keypoints"], atol=0.006)
    assert predict.main([str(img), "--json", str(out), "--csv", str(out)]) == 2   # one file for both: refused
