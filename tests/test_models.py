import pytest
import torch

from fkd.models import DECODE_TEMPERATURE, ModelConfig, PIPNet, build_model, first_argmax

CONFIGS = [ModelConfig("nose_cnn", 1, 1, 80, 60, loss="mse"), ModelConfig("imm_cnn", 58, 1, 240, 180, loss="mse"),
           ModelConfig("resnet18", 68, 3, 128, 128, width=16), ModelConfig("resnet18", 68, 3, 128, 128, width=16, blurpool=True),
           ModelConfig("pipnet", 68, 3, 128, 128, grid_stride=16), ModelConfig("pipnet", 68, 3, 128, 128, grid_stride=8),
           ModelConfig("pipnet", 68, 3, 128, 128, grid_stride=8, upsample="bilinear", mix_kernel=5, offset_weight=2.0),
           ModelConfig("pipnet", 68, 3, 128, 128, grid_stride=8, upsample="bilinear", context=False),
           ModelConfig("pipnet", 68, 3, 128, 128, grid_stride=8, upsample="bilinear", context=False, mix_width=64)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.arch + ("_blur" if c.blurpool else "") +
                         (f"_s{c.grid_stride}_{c.upsample}" + ("" if c.context else "_nocontext") + f"_w{c.mix_width}"
                          if c.arch == "pipnet" else ""))
def test_output_shapes_and_loss(cfg):
    m = build_model(cfg)
    x = torch.randn(2, cfg.in_channels, cfg.input_h, cfg.input_w)
    t = torch.rand(2, cfg.n_points, 2) * torch.tensor([cfg.input_w, cfg.input_h])
    pred, loss = m(x, t)
    assert pred.shape == (2, cfg.n_points, 2)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    m.eval()
    pred2, none = m(x)
    assert none is None and pred2.shape == (2, cfg.n_points, 2)


def test_pipnet_grid_follows_the_stride():
    for stride in (16, 8):
        m = PIPNet(ModelConfig("pipnet", 5, 3, 128, 96, grid_stride=stride))
        scores, offsets = m.raw(torch.randn(1, 3, 96, 128))
        assert scores.shape == (1, 5, (96 // stride) * (128 // stride))
        assert offsets.shape == (1, 5, (96 // stride) * (128 // stride), 2)
    with pytest.raises(ValueError, match="grid_stride"):
        PIPNet(ModelConfig("pipnet", 5, 3, 128, 128, grid_stride=4))
    with pytest.raises(ValueError, match="upsample"):
        PIPNet(ModelConfig("pipnet", 5, 3, 128, 128, upsample="bicubic"))
    with pytest.raises(ValueError, match="mix_kernel"):
        PIPNet(ModelConfig("pipnet", 5, 3, 128, 128, mix_kernel=4))


def test_pipnet_decode_recovers_a_point_from_perfect_maps():
    cfg = ModelConfig("pipnet", 2, 3, 128, 128)
    m = PIPNet(cfg)
    gh = gw = 8
    target = torch.tensor([[[37.3, 90.8], [100.0, 5.5]]])        # input pixels
    cells = (target + 0.5) / 16
    scores = torch.full((1, 2, 64), -20.0)
    offsets = torch.zeros(1, 2, 64, 2)
    grid = m._grid(gh, gw, "cpu")
    for n in range(2):
        c = int(cells[0, n, 1].floor() * gw + cells[0, n, 0].floor())
        scores[0, n, c] = 20.0
        offsets[0, n] = cells[0, n] - grid                      # every cell points at the target
    pred = m.decode(scores, offsets, grid, gh, gw) * 16 - 0.5
    assert torch.allclose(pred, target, atol=1e-3)


def test_pipnet_decode_weighs_neighbours_by_softened_probability():
    """Two neighbouring cells that disagree: the answer is their softmax(score / T)-weighted mean,
    and the shipped temperature gives the runner-up more say than temperature 1 does."""
    m = PIPNet(ModelConfig("pipnet", 1, 3, 64, 64))
    gh = gw = 4
    grid = m._grid(gh, gw, "cpu")
    scores = torch.full((1, 1, 16), -50.0)
    scores[0, 0, 5], scores[0, 0, 6] = 3.0, 1.0                  # best cell (1, 1), runner-up (2, 1)
    offsets = torch.zeros(1, 1, 16, 2)
    offsets[0, 0, 5] = torch.tensor([0.6, 0.5])                 # says x = 1.6 cells
    offsets[0, 0, 6] = torch.tensor([-0.2, 0.5])                # says x = 1.8 cells
    assert m.decode_temperature == DECODE_TEMPERATURE > 1
    x_default = m.decode(scores, offsets, grid, gh, gw)[0, 0, 0]
    for T in (DECODE_TEMPERATURE, 1.0):
        m.decode_temperature = T
        w = torch.tensor([3.0, 1.0]).div(T).softmax(0)
        want = torch.tensor([w[0] * 1.6 + w[1] * 1.8, 1.5])
        assert torch.allclose(m.decode(scores, offsets, grid, gh, gw)[0, 0], want, atol=1e-4)
    assert x_default > m.decode(scores, offsets, grid, gh, gw)[0, 0, 0] + 0.02  # T = 1: the runner-up counts less


def test_first_argmax_is_argmax_with_ties_and_large_grids():
    torch.manual_seed(0)
    s = torch.randn(3, 68, 576)                                      # a 24×24 grid: indices above 256
    s[0, 0, 300] = s[0, 0, 500] = 99.0                               # a tie: the first one wins
    s[1, 1, :] = 0.0                                                 # all equal: index 0
    s[2, 2, 575] = 99.0                                              # the last cell
    got = first_argmax(s)
    assert got.dtype == torch.long and torch.equal(got, s.argmax(-1))
    assert got[0, 0] == 300 and got[1, 1] == 0 and got[2, 2] == 575


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    cfg = ModelConfig("nose_cnn", 1, 1, 80, 60, loss="mse")
    m = build_model(cfg)
    x = torch.randn(16, 1, 60, 80)
    t = torch.rand(16, 1, 2) * torch.tensor([80, 60])
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    first = None
    for _ in range(30):
        _, loss = m(x, t)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_unknown_config_is_rejected():
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"arch": "pipnet", "depth": 3})
    with pytest.raises(ValueError, match="architecture"):
        ModelConfig.from_dict({"arch": "vit"})


def test_pipnet_offset_weight_scales_only_the_offset_term():
    torch.manual_seed(0)
    cfg = ModelConfig("pipnet", 4, 3, 64, 64, grid_stride=8)
    ref = PIPNet(cfg).eval()
    x, t = torch.randn(1, 3, 64, 64), torch.rand(1, 4, 2) * 64
    losses = []
    for w in (0.0, 1.0, 2.0):
        m = PIPNet(ModelConfig("pipnet", 4, 3, 64, 64, grid_stride=8, offset_weight=w)).eval()
        m.load_state_dict(ref.state_dict())
        losses.append(float(m(x, t)[1]))
    cls, one, two = losses
    assert one > cls > 0 and two - one == pytest.approx(one - cls, rel=1e-4)
