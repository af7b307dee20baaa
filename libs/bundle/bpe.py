"""A dependency-free reader for the decoder's tokenizer (a Hugging Face `tokenizers` tokenizer.json).

The services run with onnxruntime only, so the bundle's tokenizer is applied here in plain Python.
Supported (what the reference model and docs/bundle.md prescribe): model type BPE without dropout or
continuing-subword prefix, pre-tokenizer Metaspace (split on spaces, "▁" marks a word start,
prepend_scheme "always" or "first"), no normaliser, special tokens as added tokens. Characters
missing from the vocabulary become the unknown token. tests/model checks that this reproduces
`tokenizers` exactly on the report corpus.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Whitespace runs (newlines included) -> one space, stripped: applied before every encode."""
    return _WS.sub(" ", text or "").strip()


class BPETokenizer:
    def __init__(self, spec: dict):
        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise ValueError(f"tokenizer model must be BPE, got {model.get('type')!r}")
        if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise ValueError("BPE dropout, continuing_subword_prefix and end_of_word_suffix are not supported")
        if spec.get("normalizer") is not None:
            raise ValueError("tokenizer normalizers are not supported (text is whitespace-normalised instead)")
        pre = spec.get("pre_tokenizer") or {}
        if pre.get("type") != "Metaspace":
            raise ValueError(f"pre_tokenizer must be Metaspace, got {pre.get('type')!r}")
        self.replacement = pre.get("replacement", "▁")
        self.prepend = pre.get("prepend_scheme", "always")
        self.vocab: dict[str, int] = dict(model["vocab"])
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.unk = model.get("unk_token")
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.special: dict[str, int] = {}
        for tok in spec.get("added_tokens", []):
            self.id_to_token[tok["id"]] = tok["content"]
            self.vocab.setdefault(tok["content"], tok["id"])
            if tok.get("special"):
                self.special[tok["content"]] = tok["id"]
        self._bpe = lru_cache(maxsize=65536)(self._bpe_word)

    @classmethod
    def from_file(cls, path: Path | str) -> "BPETokenizer":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def token_id(self, token: str) -> int:
        if token not in self.vocab:
            raise KeyError(f"tokenizer has no token {token!r}")
        return self.vocab[token]

    @property
    def vocab_size(self) -> int:
        return max(self.id_to_token) + 1

    def _bpe_word(self, word: str) -> tuple[int, ...]:
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                rank = self.ranks.get((parts[i], parts[i + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = i, rank
            if best is None:
                break
            pair = (parts[best], parts[best + 1])
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the best pair, left to right
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = []
        for piece in parts:
            if piece in self.vocab:
                ids.append(self.vocab[piece])
            elif self.unk is not None:
                ids.append(self.vocab[self.unk])
        return tuple(ids)

    def encode(self, text: str) -> list[int]:
        """Token ids of whitespace-normalised `text` (no special tokens added)."""
        text = normalize_text(text)
        if not text:
            return []
        words = text.split(" ")
        ids: list[int] = []
        for i, word in enumerate(words):
            prefix = self.replacement if (i > 0 or self.prepend in ("always", "first")) else ""
            ids.extend(self._bpe(prefix + word))
        return ids

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        special_ids = set(self.special.values())
        pieces = [self.id_to_token.get(i, "") for i in ids if not (skip_special and i in special_ids)]
        text = "".join(pieces).replace(self.replacement, " ")
        return text[1:] if text.startswith(" ") else text
