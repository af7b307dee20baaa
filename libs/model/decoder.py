"""A small GPT-style Transformer decoder with an explicit key/value cache (ONNX-exportable).

forward(input_ids, prefix_embeds=None, past=None) runs P prefix embeddings (projected image tokens)
followed by T token embeddings, attending causally to `past` (L cached positions). Positions are
learned, numbered from L. Pre-LayerNorm blocks, GELU MLP, output head tied to the token embedding.
Attention is written out (matmul/softmax) rather than with fused kernels so that the legacy
TorchScript ONNX exporter and onnxruntime's INT8 quantizer see plain MatMul nodes.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

Past = list[tuple[torch.Tensor, torch.Tensor]]


class Block(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, past_k, past_v, mask):
        n, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q = q.reshape(n, s, self.heads, self.dh).transpose(1, 2)
        k = k.reshape(n, s, self.heads, self.dh).transpose(1, 2)
        v = v.reshape(n, s, self.heads, self.dh).transpose(1, 2)
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.dh)) + mask
        att = self.drop(torch.softmax(scores, dim=-1))
        y = torch.matmul(att, v).transpose(1, 2).reshape(n, s, d)
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))
        return x, k, v


class DecoderLM(nn.Module):
    def __init__(self, vocab_size: int, d_model: int = 256, layers: int = 4, heads: int = 4, ff: int = 1024,
                 max_positions: int = 512, dropout: float = 0.1):
        super().__init__()
        self.d_model, self.n_layers, self.n_heads, self.max_positions = d_model, layers, heads, max_positions
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_positions, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d_model, heads, ff, dropout) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, prefix_embeds: torch.Tensor | None = None,
                past: Past | None = None, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, Past]:
        """-> (logits [N, P+T, V], present cache).

        Training batches are right-padded and need no mask: the causal mask already keeps every real
        position from seeing the padding after it, and the loss ignores padded targets. Serving batches
        of different prompts are LEFT-padded: `attention_mask` [N, L+P+T] (1 real, 0 padding, covering
        the cache too) hides the padding keys and numbers positions from the first real token, so a
        padded row computes what it would alone."""
        x = self.tok(input_ids)
        if prefix_embeds is not None:
            x = torch.cat([prefix_embeds.to(x.dtype), x], dim=1)
        s = x.shape[1]
        past_len = past[0][0].shape[2] if past else 0
        steps = torch.arange(s, device=x.device) + past_len  # absolute index of each new position
        keys = torch.arange(past_len + s, device=x.device)
        if attention_mask is None:
            x = self.drop(x + self.pos(steps)[None])
            mask = torch.where(keys[None, :] <= steps[:, None], 0.0, float("-inf")).to(x.dtype)[None, None]
        else:
            # A large finite negative rather than -inf: a padding query then attends uniformly (its
            # output is never used) instead of producing NaN that would reach real rows through V.
            big = torch.finfo(x.dtype).min / 2
            positions = (torch.cumsum(attention_mask, dim=-1) - 1).clamp(min=0)[:, past_len:]
            x = self.drop(x + self.pos(positions))
            causal = torch.where(keys[None, :] <= steps[:, None], 0.0, big).to(x.dtype)[None, None]
            hidden = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * big
            mask = causal + hidden
        presents: Past = []
        for i, block in enumerate(self.blocks):
            pk, pv = past[i] if past else (None, None)
            x, k, v = block(x, pk, pv, mask)
            presents.append((k, v))
        logits = F.linear(self.ln_f(x), self.tok.weight)
        return logits, presents
