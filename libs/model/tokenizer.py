"""Train the decoder's BPE tokenizer (Hugging Face `tokenizers`) on the training split's texts.

Layout (what libs.bundle.bpe reads without `tokenizers`): BPE model with an unknown token, Metaspace
pre-tokenizer ("▁" word starts, split on spaces), no normaliser (text is whitespace-normalised by
libs.bundle.bpe.normalize_text first), printable ASCII always in the alphabet, case kept.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

from libs.bundle.bpe import normalize_text
from libs.bundle.decoder import SPECIAL_TOKENS, UNK


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_path: Path | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    alphabet = [c for c in string.printable if not c.isspace()] + ["▁"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet,
                                  limit_alphabet=len(alphabet) + 20, show_progress=False)
    tok.train_from_iterator((normalize_text(t) for t in texts), trainer=trainer)
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(out_path))
    return tok
