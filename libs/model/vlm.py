"""The reference vision-language model: encoder -> detection head, patch tokens -> projector -> decoder.

    image [N,1,S,S] -> ImageEncoder -> features [N,C,h,w]
        pooled token (mean of features) -> Linear -> 14 logits (detection head; Platt-calibrated at export)
        features -> avg-pool to g x g -> g^2 patch tokens [N,g^2,C] -> projector W2 GELU(W1 z + b1) + b2 -> [N,g^2,d]
    decoder input = [projected patch tokens] + <bos> prompt <sep> report <eos>

Loss (the design): L = 1.0 * CE(report tokens) + 0.5 * mean BCE(labelled detections) + 1e-4 * ||projector||^2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from libs.model.config import ModelConfig
from libs.model.decoder import DecoderLM
from libs.model.encoder import Detector

IGNORE = -100


class Projector(nn.Module):
    def __init__(self, c_in: int, d_model: int):
        super().__init__()
        self.fc1 = nn.Linear(c_in, 2 * d_model)
        self.fc2 = nn.Linear(2 * d_model, d_model)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(z)))

    def l2(self) -> torch.Tensor:
        return sum((p.float() ** 2).sum() for p in self.parameters())


class ReportModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        e, d = cfg.encoder, cfg.decoder
        self.patch_grid = cfg.patch_grid
        self.detector = Detector(tuple(e.widths), tuple(e.blocks), e.dropout)
        self.projector = Projector(self.detector.channels, d.d_model)
        self.decoder = DecoderLM(vocab_size, d.d_model, d.layers, d.heads, d.ff, d.max_positions, d.dropout)

    def patch_tokens(self, features: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(features, self.patch_grid)
        return pooled.flatten(2).transpose(1, 2)  # [N, g*g, C]

    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        return self.projector(self.patch_tokens(features))


def detection_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the known (non-NaN) labels; 0 when a batch has none."""
    mask = ~torch.isnan(labels)
    if not mask.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[mask], labels[mask].float())


def report_loss(logits: torch.Tensor, targets: torch.Tensor, prefix_len: int = 0) -> torch.Tensor:
    """Next-token CE: logits [N, P+T, V] from decoder(input_ids [N, T], P prefix); targets [N, T] hold the
    token to predict *after* each input position (IGNORE where nothing is scored)."""
    logits = logits[:, prefix_len:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE)
