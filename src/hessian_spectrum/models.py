"""The paper's networks (VGG11, ResNet18 in their 32x32 forms) and small CPU nets.

All take ``in_channels`` and ``num_classes`` and a width multiplier ``width`` that
scales every channel count and hidden width (``max(1, round(c * width))``), so that
the same architecture can be run small on a CPU.  None has dropout or any other
source of randomness in its forward pass (paper, Appendix C.3).

- ``vgg11``: configuration "A" of Simonyan and Zisserman with BatchNorm after every
  convolution, and the classifier ``512 -> 4096 -> 4096 -> C`` in which the two
  dropout layers are replaced by BatchNorm1d (Appendix C.3), as in the authors'
  released code (github.com/AnonymousNIPS2019/DeepnetHessian, ``network.py``): the
  two hidden linear layers carry no bias (BatchNorm follows them).  For 3x32x32
  inputs and C = 10 it has 28,157,706 parameters ("28 million", Section 2).
- ``resnet18``: the 32x32 ("CIFAR") form -- a 3x3 stride-1 stem convolution and no
  max-pool -- built from torchvision's ``BasicBlock``; 11,173,962 parameters for
  3x32x32 inputs and C = 10.
- ``lenet``: LeNet-5 layout (two 5x5 convolutions with max-pooling, 120 and 84
  hidden units) with ReLU, for quick CPU runs.
- ``mlp``: two hidden layers of 256 units with ReLU.

Example::

    >>> from hessian_spectrum.models import build_model, count_parameters
    >>> count_parameters(build_model("vgg11", in_channels=3, num_classes=10))
    28157706
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["MODELS", "build_model", "count_parameters"]

VGG11_CONFIG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class VGG11(nn.Module):
    """VGG11 with BatchNorm, dropout replaced by BatchNorm1d (see module docstring)."""

    def __init__(
        self, in_channels: int, num_classes: int, width: float, input_size: int
    ):
        super().__init__()
        num_pools = VGG11_CONFIG.count("M")
        side = input_size // 2**num_pools
        if side < 1:
            raise ValueError(
                f"vgg11 halves the image {num_pools} times and needs inputs of at "
                f"least {2**num_pools}x{2**num_pools}, got input_size={input_size}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for v in VGG11_CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = _scaled(v, width)
                layers += [
                    nn.Conv2d(channels, out, kernel_size=3, padding=1),
                    nn.BatchNorm2d(out),
                    nn.ReLU(),
                ]
                channels = out
        self.features = nn.Sequential(*layers)
        hidden = _scaled(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(channels * side * side, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class ResNet18(nn.Module):
    """ResNet18, 32x32 form: 3x3 stem, no max-pool, global average pooling."""

    def __init__(
        self, in_channels: int, num_classes: int, width: float, input_size: int
    ):
        # torchvision takes seconds to import; only ResNet needs it.
        from torchvision.models.resnet import BasicBlock

        super().__init__()
        planes = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(
            in_channels, planes[0], kernel_size=3, stride=1, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU()
        stages = []
        inplanes = planes[0]
        for i, p in enumerate(planes):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != p:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, p, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(p),
                )
            stages.append(
                nn.Sequential(
                    BasicBlock(inplanes, p, stride, downsample), BasicBlock(p, p)
                )
            )
            inplanes = p
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class LeNet(nn.Module):
    """LeNet-5 layout with ReLU: conv5-pool-conv5-pool-fc120-fc84-fc."""

    def __init__(
        self, in_channels: int, num_classes: int, width: float, input_size: int
    ):
        super().__init__()
        c1, c2 = _scaled(6, width), _scaled(16, width)
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"lenet needs input_size >= 16, got {input_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        h1, h2 = _scaled(120, width), _scaled(84, width)
        self.classifier = nn.Sequential(
            nn.Linear(c2 * side * side, h1),
            nn.ReLU(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class MLP(nn.Module):
    """Two hidden layers of ``round(256 * width)`` units with ReLU."""

    def __init__(
        self, in_channels: int, num_classes: int, width: float, input_size: int
    ):
        super().__init__()
        hidden = _scaled(256, width)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * input_size * input_size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


#: name -> constructor ``(in_channels, num_classes, width, input_size) -> nn.Module``
MODELS: dict[str, Callable[[int, int, float, int], nn.Module]] = {
    "vgg11": VGG11,
    "resnet18": ResNet18,
    "lenet": LeNet,
    "mlp": MLP,
}


def build_model(
    arch: str,
    in_channels: int,
    num_classes: int,
    width: float = 1.0,
    input_size: int = 32,
) -> nn.Module:
    """A freshly initialised ``arch`` (see :data:`MODELS`), in training mode.

    Initialisation draws from torch's global generator: seed it
    (``torch.manual_seed``) for reproducible weights.
    """
    if arch not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(MODELS))}")
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    if in_channels < 1 or num_classes < 2:
        raise ValueError(
            f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, "
            f"{num_classes}"
        )
    return MODELS[arch](
        int(in_channels), int(num_classes), float(width), int(input_size)
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the dimension p of the Hessian)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
