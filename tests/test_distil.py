"""The distillation teacher (fkd/distil.py) and the loss that learns from it (PIPNet with `soft`)."""
import pytest
import torch

from fkd.distil import FlipEnsemble
from fkd.layouts import IBUG68
from fkd.models import ModelConfig, PIPNet, Soft

CFG = ModelConfig("pipnet", 68, 3, 64, 64, grid_stride=8, upsample="bilinear", context=False, mix_width=32)
PERM = list(IBUG68.flip)


def random_model(cfg: ModelConfig = CFG) -> PIPNet:
    """An untrained PIPNet whose cell scores vary: BatchNorm statistics taken from one random batch
    (at init they would leave eval-mode features, and so the scores, nearly flat)."""
    m = PIPNet(cfg)
    for bn in m.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.momentum = None                                          # a plain average of what it sees
    with torch.no_grad():
        m.train().raw(torch.randn(4, 3, cfg.input_h, cfg.input_w))
    return m.eval()


def mirror(soft: Soft, gh: int, gw: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What the teacher of a mirrored image must answer, computed from the teacher of the image."""
    B = soft.probs.shape[0]
    probs = soft.probs.view(B, -1, gh, gw).flip(-1).reshape(B, -1, gh * gw)[:, PERM]
    pts = soft.points[:, PERM].clone()
    pts[..., 0] = width - 1 - pts[..., 0]
    return probs, pts


def test_teacher_of_a_mirrored_image_is_the_mirrored_teacher():
    torch.manual_seed(0)
    teacher = FlipEnsemble([random_model(), random_model()], PERM, 0.5)
    x = torch.randn(2, 3, 64, 64)
    a, b = teacher(x), teacher(x.flip(-1))
    probs, pts = mirror(a, 8, 8, 64)
    assert torch.allclose(b.probs, probs, atol=1e-5) and torch.allclose(b.points, pts, atol=1e-3)
    assert torch.allclose(a.probs.sum(-1), torch.ones(2, 68), atol=1e-5) and a.weight == 0.5
    # a single unmirrored pass is not symmetric: the average over the mirror is what makes it so
    m = teacher.models[0]
    s1, _ = m.raw(x)
    s2, _ = m.raw(x.flip(-1))
    assert not torch.allclose(s2.softmax(-1), s1.softmax(-1).view(2, 68, 8, 8).flip(-1).reshape(2, 68, 64)[:, PERM],
                              atol=1e-3)


class BrightSpot(PIPNet):
    """A perfect model: every point is at the brightest pixel (ties: the first), found exactly."""

    def raw(self, x):
        B, _, H, W = x.shape
        s, n = self.cfg.grid_stride, self.cfg.n_points
        flat = x.sum(1).flatten(1).argmax(-1)
        px = torch.stack([flat % W, flat // W], -1).float()               # (B, 2)
        cells = (px + 0.5) / s
        gw, gh = W // s, H // s
        cell = (cells[:, 1].floor() * gw + cells[:, 0].floor()).long()
        scores = torch.full((B, n, gh * gw), -30.0)
        scores[torch.arange(B), :, cell] = 30.0
        offsets = (cells[:, None, None, :] - self._grid(gh, gw, x.device)).expand(B, n, gh * gw, 2)
        return scores, offsets.contiguous()


def test_teacher_maps_mirrored_answers_back_to_the_right_pixel():
    x = torch.zeros(3, 3, 64, 64)
    spots = [(0, 0), (37, 21), (63, 50)]                                # (x, y): both edges and a middle
    for i, (u, v) in enumerate(spots):
        x[i, :, v, u] = 1.0
    soft = FlipEnsemble([BrightSpot(CFG)], PERM, 1.0)(x)
    want = torch.tensor(spots, dtype=torch.float32)[:, None, :].expand(3, 68, 2)
    assert torch.allclose(soft.points, want, atol=1e-3)
    assert torch.allclose(soft.probs.max(-1).values, torch.ones(3, 68), atol=1e-5)


def test_a_teacher_that_agrees_costs_nothing_and_one_that_differs_does():
    torch.manual_seed(0)
    cfg = ModelConfig(**{**CFG.to_dict(), "offset_weight": 0.0})         # the cell term alone
    m = random_model(cfg)
    x, t = torch.randn(2, 3, 64, 64), torch.rand(2, 68, 2) * 64
    scores, _ = m.raw(x)
    own = Soft(scores.softmax(-1).detach(), t, 1.0)
    other = Soft(torch.nn.functional.one_hot(own.probs.argmin(-1), 64).float(), t, 1.0)
    plain = float(m(x, t)[1])
    assert float(m(x, t, own)[1]) == pytest.approx(0.0, abs=1e-5)
    assert float(m(x, t, other)[1]) > 0.01
    assert float(m(x, t, own._replace(weight=0.0))[1]) == pytest.approx(plain, rel=1e-6)


def test_teacher_is_made_of_grid_models_only():
    from fkd.models import build_model
    with pytest.raises(ValueError, match="pipnet"):
        FlipEnsemble([build_model(ModelConfig("resnet18", 68, 3, 64, 64, width=8))], PERM, 0.5)


def test_cell_overlap_moves_each_cell_whole_into_the_cells_it_covers():
    from fkd.distil import cell_overlap
    a = cell_overlap(20, 16)                              # a 160² teacher's grid onto a 128² student's, stride 8
    assert a.shape == (16, 20) and torch.allclose(a.sum(0), torch.ones(20))
    assert torch.allclose(a[:2, :3], torch.tensor([[1.0, 0.25, 0.0], [0.0, 0.75, 0.5]]))
    assert torch.equal(cell_overlap(5, 5), torch.eye(5))


def test_a_teacher_on_a_larger_input_stays_mirror_symmetric_and_keeps_its_mass():
    """A 64² teacher (8 × 8 cells) for a 48² student (6 × 6): its cells split 3 to 2 between the
    student's, and the answer on a mirrored image is still the mirrored answer."""
    torch.manual_seed(0)
    teacher = FlipEnsemble([random_model()], PERM, 0.5, grid_stride=8)
    x = torch.randn(2, 3, 48, 48)
    a, b = teacher(x), teacher(x.flip(-1))
    assert a.probs.shape == (2, 68, 36) and torch.allclose(a.probs.sum(-1), torch.ones(2, 68), atol=1e-5)
    probs, pts = mirror(a, 6, 6, 48)
    assert torch.allclose(b.probs, probs, atol=1e-5) and torch.allclose(b.points, pts, atol=1e-3)


def test_a_teacher_on_a_larger_input_answers_in_the_students_pixels_and_grid():
    """The student's 32² image, resized to the teacher's 64²: a bright pixel there becomes 2 × 2 tied
    pixels. In x the image and its mirror take the first of them from either side, so the
    flip-averaged x lands back on the student's pixel exactly; in y both take the upper one, a
    quarter of a student pixel up. The cells are the student's 4 × 4."""
    x = torch.zeros(3, 3, 32, 32)
    spots = [(1, 2), (13, 21), (30, 17)]
    for i, (u, v) in enumerate(spots):
        x[i, :, v, u] = 1.0
    soft = FlipEnsemble([BrightSpot(CFG)], PERM, 1.0, grid_stride=8)(x)
    want = torch.tensor([(u, v - 0.25) for u, v in spots])[:, None, :].expand(3, 68, 2)
    assert torch.allclose(soft.points, want, atol=1e-3)
    assert soft.probs.shape == (3, 68, 16) and torch.allclose(soft.probs.sum(-1), torch.ones(3, 68), atol=1e-5)
    cells = torch.tensor([(v // 8) * 4 + u // 8 for u, v in spots])
    assert torch.equal(soft.probs.argmax(-1), cells[:, None].expand(3, 68))
