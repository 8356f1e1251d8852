"""Networks: the paper's parameter counts, width scaling, forward shapes, registry."""

from __future__ import annotations

import pytest
import torch

from hessian_spectrum.models import MODELS, build_model, count_parameters


def test_vgg11_has_the_papers_28_million_parameters():
    # 9,220,480 conv + 5,504 BatchNorm2d + 2,097,152 + 16,777,216 (bias-free hidden
    # linears) + 16,384 BatchNorm1d + 40,970 output layer.
    n = count_parameters(build_model("vgg11", in_channels=3, num_classes=10))
    assert n == 28_157_706
    assert 28.1e6 <= n < 28.2e6  # "28.1M" (the paper: "28 million")


def test_resnet18_32x32_parameter_count():
    n = count_parameters(build_model("resnet18", in_channels=3, num_classes=10))
    assert n == 11_173_962
    assert round(n / 1e6, 1) == 11.2


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("in_channels,num_classes", [(1, 10), (3, 4)])
def test_small_widths_forward_in_both_modes(arch, in_channels, num_classes):
    torch.manual_seed(0)
    model = build_model(arch, in_channels, num_classes, width=1 / 16)
    x = torch.randn(3, in_channels, 32, 32)
    assert model(x).shape == (3, num_classes)
    assert model.eval()(x).shape == (3, num_classes)
    # no randomness in the forward pass (no dropout): eval mode is deterministic
    assert torch.equal(model(x), model(x))


def test_width_scales_parameters():
    small = count_parameters(build_model("vgg11", 1, 10, width=1 / 8))
    half = count_parameters(build_model("vgg11", 1, 10, width=1 / 2))
    assert small < half < 28_156_554


def test_input_size_28_without_padding():
    for arch in ("lenet", "mlp", "resnet18"):
        model = build_model(arch, 1, 10, width=1 / 16, input_size=28)
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="at least 32x32"):
        build_model("vgg11", 1, 10, input_size=28)


def test_same_seed_same_weights():
    torch.manual_seed(5)
    a = build_model("lenet", 1, 10)
    torch.manual_seed(5)
    b = build_model("lenet", 1, 10)
    assert all(
        torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown arch 'vgg16'") as err:
        build_model("vgg16", 3, 10)
    for name in MODELS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="width"):
        build_model("mlp", 1, 10, width=0)
