"""models.count_macs (torch's FlopCounterMode) against the forward-hook count it replaced, kept here as the reference."""
import pytest
import torch
from torch import nn

from tadist_utils import fused, models


def hook_macs(model: nn.Module, image_size: int = 32) -> int:
    """The former models.count_macs: forward hooks on every Conv2d and Linear, one zero image, eval mode."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.shape[1] * out.shape[2] * out.shape[3] * k

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def ensemble_of_2() -> models.Ensemble:
    return models.Ensemble([models.student(2) for _ in range(2)])


NETS = {
    "teacher": lambda: models.teacher(),
    **{f"student_level{lv}": (lambda lv=lv: models.student(lv)) for lv in models.STUDENT_LEVELS},
    "ensemble_2": ensemble_of_2,
    "fused_ensemble_2": lambda: fused.FusedEnsemble(ensemble_of_2()),
    "fused_ensemble_2_bn_folded": lambda: fused.FusedEnsemble(ensemble_of_2().eval(), fold_bn=True),
}


@pytest.mark.parametrize("name", list(NETS))
def test_count_macs_equals_the_hook_reference(name):
    torch.manual_seed(0)
    net = NETS[name]().train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    macs = models.count_macs(net)
    assert macs == hook_macs(net) > 0
    # counting leaves the model as it was: its mode, and no BatchNorm statistics updated
    assert net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


def test_fused_ensemble_costs_what_its_ensemble_costs():
    ens = ensemble_of_2().eval()
    assert models.count_macs(fused.FusedEnsemble(ens)) == models.count_macs(ens) == 105_714_688


def test_torchinfo_counts_biases_and_batchnorm_too():
    """Why count_macs does not use torchinfo's total_mult_adds: it adds one mult-add per bias element per output
    position and one per BatchNorm weight and bias, so every macs_per_image written so far would change."""
    torchinfo = pytest.importorskip("torchinfo")
    net = models.teacher().eval()
    extra = 0

    def hook(m, _inp, out):
        nonlocal extra
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            extra += m.bias.numel() * out.shape[2] * out.shape[3]
        elif isinstance(m, nn.Linear) and m.bias is not None:
            extra += m.bias.numel()
        elif isinstance(m, nn.BatchNorm2d):
            extra += m.weight.numel() + m.bias.numel()

    hooks = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    total = torchinfo.summary(net, input_size=(1, 3, 32, 32), device="cpu", verbose=0).total_mult_adds
    assert total == models.count_macs(net) + extra != models.count_macs(net)
