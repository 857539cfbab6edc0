import math

import pytest
import torch
from torch import nn

from kvq.engine.ema import ModelEMA
from kvq.engine.losses import plcc_loss, rank_loss
from kvq.engine.optim import param_groups, warmup_cosine


def test_plcc_loss_matches_closed_form() -> None:
    torch.manual_seed(0)
    pred, label = torch.randn(16, 1), torch.randn(16, 1)
    rho = torch.corrcoef(torch.stack([pred.view(-1), label.view(-1)]))[0, 1]
    expected = ((1 - rho) / 2 + (1 - rho ** 2) / 4) / 2
    assert plcc_loss(pred, label).item() == pytest.approx(expected.item(), abs=1e-5)
    assert plcc_loss(label * 3 + 1, label).item() == pytest.approx(0.0, abs=1e-6)


def test_rank_loss_zero_when_ordered_positive_otherwise() -> None:
    label = torch.tensor([[1.0], [2.0], [3.0]])
    assert rank_loss(label * 2, label).item() == 0.0
    assert rank_loss(-label, label).item() > 0.0


def test_losses_of_a_single_video_are_zero_with_gradient() -> None:
    pred = torch.ones(1, 1, requires_grad=True)
    loss = plcc_loss(pred, torch.ones(1, 1)) + rank_loss(pred, torch.ones(1, 1))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_warmup_cosine() -> None:
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)
    assert warmup_cosine(0, 0, 100) == pytest.approx(1.0)  # no warm-up: no division by zero


def test_ema_covers_parameters_and_buffers_and_stays_in_eval() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.add_(2.0)
    model.train()
    model(torch.randn(8, 3))  # changes running stats and num_batches_tracked
    ema.update(model)
    assert not ema.module.training
    old = ModelEMA(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), 0.5)
    assert torch.allclose(ema.module[0].weight, 0.5 * (model[0].weight - 2.0) + 0.5 * model[0].weight)
    assert torch.allclose(ema.module[1].running_mean, 0.5 * model[1].running_mean)
    assert ema.module[1].num_batches_tracked.item() == 1
    assert old.module[1].num_batches_tracked.item() == 0


def _frozen_tower_model() -> nn.Module:
    """A frozen 'tower' (Linear + BatchNorm, as with freeze_backbone) and a trainable head."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    model[:2].requires_grad_(False)
    return model


def old_ema_update(ema: dict[str, torch.Tensor], model: nn.Module, decay: float) -> None:
    """The EMA formula entry by entry: every floating state entry lerped (frozen parameters
    included), integers copied. `ema`: a state dict."""
    for key, value in model.state_dict().items():
        if ema[key].is_floating_point():
            ema[key].lerp_(value.to(ema[key].dtype), 1.0 - decay)
        else:
            ema[key].copy_(value)


def test_fused_ema_update_equals_the_old_formula_and_shares_frozen_parameters() -> None:
    model = _frozen_tower_model()
    ema = ModelEMA(model, decay=0.9)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(3):
        model(torch.randn(8, 3)).square().mean().backward()  # BN statistics adapt, head trains
        optimizer.step()
        ema.update(model)
        old_ema_update(reference, model, 0.9)
    for key, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=1e-7, msg=key)
    assert ema.module[0].weight.data_ptr() == model[0].weight.data_ptr()  # frozen: one copy in memory
    assert ema.module[2].weight.data_ptr() != model[2].weight.data_ptr()
    assert ema.module[1].running_mean.data_ptr() != model[1].running_mean.data_ptr()
    assert ema.shared == {"0.weight", "0.bias", "1.weight", "1.bias"}
    assert not set(ema.state_dict()) & ema.shared  # stored once, under the model


def test_ema_loads_its_own_state_dict_only() -> None:
    model = _frozen_tower_model()
    ema = ModelEMA(model)
    own = {k: v + 1 for k, v in ema.state_dict().items()}
    ema.load_state_dict(own)
    for key, value in ema.module.state_dict().items():
        expected = model.state_dict()[key] if key in ema.shared else own[key]
        assert torch.equal(value, expected), key
    with pytest.raises(RuntimeError, match="unexpected.*0.weight"):  # a full state dict holds the shared ones
        ema.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})
    with pytest.raises(RuntimeError, match="missing.*2.weight"):
        ema.load_state_dict({k: v for k, v in own.items() if k != "2.weight"})


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.x_backbone = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
        self.x_head = nn.Linear(2, 1)
        self.frozen = nn.Linear(2, 2).requires_grad_(False)


def test_param_groups_backbone_lr_and_no_decay_for_norms_and_biases() -> None:
    groups = {g["name"]: g for g in param_groups(Net(), lr=1e-3, backbone_lr_mult=0.1, wd=0.05)}
    assert set(groups) == {"backbone", "backbone_no_decay", "other", "other_no_decay"}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["other"]["lr"] == pytest.approx(1e-3)
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["backbone"]["weight_decay"] == 0.05
    assert len(groups["backbone_no_decay"]["params"]) == 3  # linear bias, norm weight, norm bias
    assert sum(len(g["params"]) for g in groups.values()) == 6  # frozen layer left out
    all_decay = param_groups(Net(), 1e-3, 1.0, 0.05, wd_norm_bias=True)
    assert {g["name"] for g in all_decay} == {"backbone", "other"}
