import numpy as np
import pytest
import torch

from fkd.layouts import IBUG68, IMM58
from fkd.transforms import EvalPreset, TrainPreset, _affine, hflip


def dot_image(x: int, y: int, size=64):
    img = torch.zeros(1, size, size, dtype=torch.uint8)
    img[0, y, x] = 255
    return img


def centroid(img):
    w = img[0].float()
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]).float(), torch.arange(w.shape[1]).float(), indexing="ij")
    return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())


@pytest.mark.parametrize("angle,translate,scale", [(90.0, [0.0, 0.0], 1.0), (-90.0, [3.0, -2.0], 1.0),
                                                   (180.0, [0.0, 0.0], 1.0), (0.0, [5.0, 7.0], 1.0)])
def test_affine_keeps_points_on_their_pixel(angle, translate, scale):
    img = dot_image(10, 20)
    out, pts = _affine(img, torch.tensor([[10.0, 20.0]]), angle, translate, scale)
    cx, cy = centroid(out)
    assert pts[0, 0].item() == pytest.approx(cx, abs=0.05)
    assert pts[0, 1].item() == pytest.approx(cy, abs=0.05)


def test_flip_moves_point_to_mirror_pixel_and_swaps_indices():
    img = dot_image(10, 20)
    pts = torch.zeros(68, 2)
    pts[36] = torch.tensor([10.0, 20.0])  # a left-eye corner on the bright pixel
    out, fp = hflip(img, pts, IBUG68.flip)
    cx, cy = centroid(out)
    assert (cx, cy) == pytest.approx((53.0, 20.0))
    assert fp[45].tolist() == pytest.approx([53.0, 20.0])  # now the other eye's corner


@pytest.mark.parametrize("layout", [IBUG68, IMM58])
def test_flip_permutations_are_involutions(layout):
    perm = np.array(layout.flip)
    assert len(perm) == layout.n_points
    assert (perm[perm] == np.arange(layout.n_points)).all()


def test_ibug_flip_mirrors_the_mean_shape():
    from conftest import W300
    from fkd.data import find_300w
    recs, _ = find_300w(W300)
    shapes = []
    for r in recs:
        p = r.points - r.points.mean(0)
        shapes.append(p / np.sqrt((p ** 2).sum(1).mean()))
    m = np.mean(shapes, 0)
    mirrored = (m * [-1, 1])[list(IBUG68.flip)]
    assert np.abs(mirrored - m).mean() < 0.05           # symmetric under the permutation
    assert np.abs((m * [-1, 1]) - m).mean() > 0.3       # and not under the identity


def test_presets_output_shape_and_range():
    torch.manual_seed(0)
    patch = torch.randint(0, 256, (3, 192, 192), dtype=torch.uint8)
    pts = torch.rand(68, 2) * 60 + 66
    x, p = TrainPreset(size_wh=(128, 128), flip_perm=IBUG68.flip)(patch, pts)
    assert x.shape == (3, 128, 128) and x.dtype == torch.float32
    assert x.min() >= -0.5 and x.max() <= 0.5
    assert p.shape == (68, 2)
    x, p2 = EvalPreset(size_wh=(128, 128))(patch, pts)
    assert torch.allclose(p2, pts - 32)
