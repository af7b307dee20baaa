"""Image encoder: a small residual CNN trained from scratch, plus the 14-label detection head.

Why a CNN and not a ViT: the reference is trained from scratch on ~4,000 images on 2 CPU cores. Small
CNNs learn from that little data (locality and translation equivariance are built in, where a ViT must
learn them from data it does not have), train several times faster per image on CPU, quantize well to
INT8 (Conv+ReLU), and give class-activation maps (CAM) for boxes directly from the last feature map.
The rest of the model only needs "a pooled token" and "patch tokens", which the CNN provides:
pooled token = global average of the last feature map; patch tokens = its cells (avg-pooled to
`patch_grid` x `patch_grid`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

N_LABELS = 14


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = _conv_bn(cout, cout)
        self.skip = None if (cin == cout and stride == 1) else _conv_bn(cin, cout, stride, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class ImageEncoder(nn.Module):
    """[N, 1, S, S] normalised image -> feature map [N, C, S/16, S/16]."""

    def __init__(self, widths: tuple[int, ...] = (24, 32, 64, 128, 192), blocks: tuple[int, ...] = (1, 1, 1, 1)):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(1, widths[0], stride=2), nn.ReLU())
        stages = []
        cin = widths[0]
        for i, (cout, n) in enumerate(zip(widths[1:], blocks)):
            stride = 2 if i < 3 else 1  # S/2 stem, then /4 /8 /16, last stage keeps /16 for finer CAMs
            layers = [ResBlock(cin, cout, stride)] + [ResBlock(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class Detector(nn.Module):
    """Encoder + linear 14-label head on the pooled token; CAMs from the same weights."""

    def __init__(self, widths=(24, 32, 64, 128, 192), blocks=(1, 1, 1, 1), dropout: float = 0.2):
        super().__init__()
        self.encoder = ImageEncoder(tuple(widths), tuple(blocks))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.out_channels, N_LABELS)

    @property
    def channels(self) -> int:
        return self.encoder.out_channels

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logits [N, 14], features [N, C, h, w])."""
        features = self.encoder(image)
        pooled = features.mean((2, 3))
        return self.head(self.dropout(pooled)), features

    def cams(self, features: torch.Tensor) -> torch.Tensor:
        """Class-activation maps [N, 14, h, w]: the head applied to every cell of the feature map."""
        return torch.einsum("kc,nchw->nkhw", self.head.weight, features) + self.head.bias[None, :, None, None]
