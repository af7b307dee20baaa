"""The bundle's report-text decoder: prompt format, tokenizer, and generation (greedy or beam search, one
study or a batch of studies) with a KV cache.

Contract (docs/bundle.md, "Decoder"): `files.decoder` is one ONNX graph that runs a decoder *step*:

    inputs   input_ids              int64   [N, T]        new tokens (the whole prompt on the first step, then 1)
             prefix_embeds          float32 [N, P, D]     only when manifest generation.image_tokens is true:
                                                          the encoder's `image_tokens` on the first step, P = 0 after
             past_key.<i>, past_value.<i>  float32 [N, H, L, Dh]  for each layer i; L = 0 on the first step
             attention_mask         int64   [N, L + P + T] optional: 1 for real positions, 0 for padding
    outputs  logits                 float32 [N, V]        next-token logits at the last position
             present_key.<i>, present_value.<i>  float32 [N, H, L + P + T, Dh]

Positions are numbered from L inside the graph; with `attention_mask` they count only the real positions
and padding keys are hidden, so studies with prompts of different lengths decode together, LEFT-padded,
in one batch (generate_many). A decoder without it decodes one study at a time. The prompt is `build_prompt(context, predictions)`
(format "cxr-findings-v2", or v1 for older bundles), encoded by the bundle's tokenizer and framed `<bos> prompt <sep>`; the
report is generated after `<sep>` until `<eos>` or `generation.max_new_tokens`. Everything here is plain
numpy + onnxruntime, so the services need no torch and no `tokenizers`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libs.bundle.bpe import BPETokenizer, normalize_text
from libs.core.errors import BundleUnavailable
from libs.domain.labels import CHEXPERT_LABELS

# v1 wrote each probability to one decimal, so a positive at 0.89-0.95 and a negative at 0.9 read alike to
# the decoder (bundle 1.2.1); v2 writes two decimals. Bundles name the format their decoder learnt.
PROMPT_FORMATS = ("cxr-findings-v1", "cxr-findings-v2")
PROMPT_FORMAT = "cxr-findings-v2"
_DECIMALS = {"cxr-findings-v1": 1, "cxr-findings-v2": 2}
PAD, UNK, BOS, EOS, SEP = "<pad>", "<unk>", "<bos>", "<eos>", "<sep>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, SEP)

INPUT_IDS = "input_ids"
INPUT_MASK = "attention_mask"
INPUT_PREFIX = "prefix_embeds"
OUTPUT_LOGITS = "logits"
ENCODER_IMAGE_TOKENS = "image_tokens"
MAX_INDICATION_CHARS = 200


def past_names(i: int) -> tuple[str, str]:
    return f"past_key.{i}", f"past_value.{i}"


def present_names(i: int) -> tuple[str, str]:
    return f"present_key.{i}", f"present_value.{i}"


# -- prompt (shared by training and serving: change it and PROMPT_FORMAT together) ------------------

def context_prompt(age: int | None = None, sex: str | None = None, indication: str | None = None,
                   has_prior: bool = False) -> str:
    """'age 54; female; indication: chest pain; prior study' (parts omitted when unknown), or 'none'."""
    from libs.domain.context import ClinicalContext

    indication = normalize_text(indication or "")[:MAX_INDICATION_CHARS] or None
    sex = sex if sex in ("M", "F", "O", "U") else None
    age = age if age is not None and 0 <= age <= 130 else None
    text = ClinicalContext(age=age, sex=sex, indication=indication).as_prompt()
    if has_prior:
        text = f"{text}; prior study" if text else "prior study"
    return text or "none"


def context_prompt_from(context) -> str:
    """context_prompt for a libs.domain.context.ClinicalContext (or None)."""
    if context is None:
        return "none"
    return context_prompt(context.age, context.sex, context.indication, bool(context.prior_studies))


def findings_prompt(findings: Sequence[tuple[str, float, bool]], prompt_format: str = PROMPT_FORMAT) -> str:
    """[(label, probability, positive)] of the ASSESSED labels ->
    'positive: pneumonia 0.93 | negative: cardiomegaly 0.12, edema 0.00' (v2; v1: one decimal).

    Positive (probability >= threshold) and negative labels go to separate lists, each in
    CHEXPERT_LABELS order, lower case, probability to two decimals (v1: one), 'none' when empty. Labels that are
    not assessed are in neither list (the decoder must not read them as negative); with none assessed
    the whole part is 'not assessed'.
    """
    if prompt_format not in _DECIMALS:
        raise ValueError(f"unknown prompt format {prompt_format!r}; known: {', '.join(PROMPT_FORMATS)}")
    decimals = _DECIMALS[prompt_format]
    by_label = {label: (p, pos) for label, p, pos in findings}
    if not by_label:
        return "not assessed"
    lists: dict[bool, list[str]] = {True: [], False: []}
    for label in CHEXPERT_LABELS:
        if label in by_label:
            p, pos = by_label[label]
            lists[bool(pos)].append(f"{label.lower()} {min(max(p, 0.0), 1.0):.{decimals}f}")
    return f"positive: {', '.join(lists[True]) or 'none'} | negative: {', '.join(lists[False]) or 'none'}"


def build_prompt(context_text: str, findings_text: str) -> str:
    """Findings first, then context (a long indication can only push the context, never the findings)."""
    return f"{findings_text} | context: {context_text}"


def prompt_for(predictions, context=None, prompt_format: str = PROMPT_FORMAT) -> str:
    """Prompt for one image from its LabelPredictions (libs.domain.model_output) and ClinicalContext, in
    the bundle's prompt format."""
    findings = [(p.label, float(p.probability), bool(p.positive)) for p in predictions if p.assessed]
    return build_prompt(context_prompt_from(context), findings_prompt(findings, prompt_format))


# -- generation -------------------------------------------------------------------------------------

@dataclass
class Generated:
    text: str
    token_ids: list[int]
    ms: float


# Any vocabulary entry containing this is suppressed (see ReportDecoder.__init__): "XX" also catches the
# halves a tokenizer may have learnt for "XXXX".
DEIDENTIFICATION_MARK = "XX"


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Flat indices of the n largest scores, best first (ties in index order, as a stable sort gives)."""
    flat = scores.ravel()
    if n >= flat.size:
        return np.argsort(-flat, kind="stable")
    nth = -np.partition(-flat, n - 1)[n - 1]  # the n-th largest value
    cand = np.flatnonzero(flat >= nth)  # every tie at the boundary too, in index order
    return cand[np.argsort(-flat[cand], kind="stable")[:n]]


def _reorder_rows(past: list, gather: list[int]) -> list:
    """The cache rows in `gather` order. When the row count stays (beams reordered within their study),
    only the rows that change are copied, in place: the step's outputs are fresh arrays this decoder
    owns, and copying a few rows beats allocating and filling a whole new cache every step."""
    n = past[0].shape[0]
    if len(gather) != n:
        return [p[gather] for p in past]
    changed = [row for row, src in enumerate(gather) if row != src]
    sources = [gather[row] for row in changed]
    for p in past:
        p[changed] = p[sources]  # the right side is read (copied) before any row is written
    return past


def _banned_by_ngram(tokens: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram already present in `tokens` (no_repeat_ngram_size)."""
    if n <= 0 or len(tokens) < n:
        return set()
    prefix = tuple(tokens[len(tokens) - n + 1:]) if n > 1 else ()
    banned = set()
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i:i + n - 1]) == prefix:
            banned.add(tokens[i + n - 1])
    return banned


class ReportDecoder:
    """Loads decoder.onnx + tokenizer.json and generates reports (greedy or beam search), one study at a
    time or, when the graph takes an attention mask, many studies in one batch."""

    def __init__(self, decoder_path: Path, tokenizer_path: Path, *, max_new_tokens: int = 160,
                 no_repeat_ngram_size: int = 0, num_beams: int = 1, length_penalty: float = 1.0,
                 providers: list[str] | None = None, session_options=None, cache_dir: Path | None = None,
                 session=None):
        """`session`: an object with onnxruntime's session interface to run instead of `decoder_path`
        (libs.model.torch_runtime)."""
        try:
            self.tokenizer = BPETokenizer.from_file(tokenizer_path)
            self.bos, self.eos, self.sep = (self.tokenizer.token_id(t) for t in (BOS, EOS, SEP))
        except (OSError, ValueError, KeyError) as exc:
            raise BundleUnavailable(f"cannot load tokenizer {tokenizer_path}: {exc}") from None
        if session is not None:
            self._session = session
        else:
            self._session = self._open(decoder_path, providers, session_options, cache_dir)
        self._init_rest(max_new_tokens, no_repeat_ngram_size, num_beams, length_penalty)

    @staticmethod
    def _open(decoder_path, providers, session_options, cache_dir):
        from libs.bundle.providers import create_session, first_line

        try:
            return create_session(Path(decoder_path), providers or ["CPUExecutionProvider"], session_options,
                                  cache_dir=cache_dir, bundle_dir=Path(decoder_path).parent)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise BundleUnavailable(f"cannot load decoder {decoder_path}: {first_line(exc)}") from None

    def _init_rest(self, max_new_tokens: int, no_repeat_ngram_size: int, num_beams: int, length_penalty: float) -> None:
        # IU/Open-i reports mark de-identified words as "XXXX"; a decoder trained on them learns to write
        # the mark, which means nothing to a reader. Such tokens are never generated.
        self.suppressed = np.asarray(
            sorted(i for token, i in self.tokenizer.vocab.items() if DEIDENTIFICATION_MARK in token), dtype=np.int64
        )
        self.max_new_tokens = max_new_tokens
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self._check_io()

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if INPUT_IDS not in inputs or inputs[INPUT_IDS].type != "tensor(int64)":
            raise BundleUnavailable(f"decoder must have an int64 input {INPUT_IDS!r}")
        if OUTPUT_LOGITS not in outputs:
            raise BundleUnavailable(f"decoder has no output {OUTPUT_LOGITS!r}")
        self.n_layers = 0
        while past_names(self.n_layers)[0] in inputs:
            self.n_layers += 1
        if self.n_layers == 0:
            raise BundleUnavailable("decoder has no past_key.0 input (a step graph with a key/value cache is required)")
        self._past_shapes = []
        for i in range(self.n_layers):
            for name in past_names(i):
                arg = inputs.get(name)
                if arg is None or arg.type != "tensor(float)" or len(arg.shape or []) != 4:
                    raise BundleUnavailable(f"decoder input {name!r} must be float32 [N, H, L, Dh]")
                h, dh = arg.shape[1], arg.shape[3]
                if not (isinstance(h, int) and isinstance(dh, int)):
                    raise BundleUnavailable(f"decoder input {name!r} needs fixed H and Dh dims, got {arg.shape}")
            for name in present_names(i):
                if name not in outputs:
                    raise BundleUnavailable(f"decoder has no output {name!r}")
            self._past_shapes.append((inputs[past_names(i)[0]].shape[1], inputs[past_names(i)[0]].shape[3]))
        self.has_prefix = INPUT_PREFIX in inputs
        self.has_mask = INPUT_MASK in inputs
        if self.has_mask and inputs[INPUT_MASK].type != "tensor(int64)":
            raise BundleUnavailable(f"decoder input {INPUT_MASK!r} must be int64 [N, K]")
        if self.has_prefix:
            shape = inputs[INPUT_PREFIX].shape
            self.prefix_dim = shape[2] if shape and isinstance(shape[2], int) else None
        self._output_names = [OUTPUT_LOGITS] + [n for i in range(self.n_layers) for n in present_names(i)]

    def prompt_ids(self, prompt: str) -> list[int]:
        return [self.bos, *self.tokenizer.encode(prompt), self.sep]

    def feed(self, ids: list[list[int]], past: list[np.ndarray], prefix: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One step's inputs: `ids` [N][T] new tokens, `past` the cache, `prefix` [N, P, D] image tokens
        (first step only), `mask` [N, L + P + T] (all ones when None and the graph takes a mask)."""
        n = len(ids)
        feed = {INPUT_IDS: np.asarray(ids, dtype=np.int64)}
        for i in range(self.n_layers):
            k, v = past_names(i)
            # ORT outputs and row gathers are already contiguous; torch device tensors pass as they are
            feed[k], feed[v] = past[2 * i], past[2 * i + 1]
        n_prefix = 0
        if self.has_prefix:
            if prefix is None:
                prefix = np.zeros((n, 0, self.prefix_dim or 1), dtype=np.float32)
            feed[INPUT_PREFIX] = prefix
            n_prefix = prefix.shape[1]
        if self.has_mask:
            if mask is None:
                mask = np.ones((n, int(past[0].shape[2]) + n_prefix + feed[INPUT_IDS].shape[1]), dtype=np.int64)
            feed[INPUT_MASK] = mask
        return feed

    def generate(self, prompt: str, prefix: np.ndarray | None = None, max_new_tokens: int | None = None,
                 num_beams: int | None = None) -> Generated:
        """Decode one report (greedy, or beam search when num_beams > 1). `prefix`: float32 [1, P, D]
        image tokens, or None."""
        if prefix is not None and not self.has_prefix:
            raise ValueError("this decoder takes no image tokens (no prefix_embeds input)")
        return self._decode([prompt], prefix, max_new_tokens, num_beams)[0]

    def _step_batch(self, ids: list[list[int]], past: list[np.ndarray], mask: np.ndarray | None = None,
                    prefix: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        out = self._session.run(self._output_names, self.feed(ids, past, prefix, mask))
        return out[0], out[1:]

    def _empty_past(self, n: int) -> list[np.ndarray]:
        return [np.zeros((n, h, 0, dh), dtype=np.float32) for h, dh in self._past_shapes for _ in range(2)]

    def _log_probs(self, logits: np.ndarray, seqs: list[list[int]]) -> np.ndarray:
        # In place on the one float64 copy: the same arithmetic, fewer temporaries (this runs every step).
        logp = logits.astype(np.float64)
        logp -= logp.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        logp[:, self.suppressed] = -np.inf
        if self.no_repeat_ngram_size > 0:
            for b, seq in enumerate(seqs):
                for banned in _banned_by_ngram(seq, self.no_repeat_ngram_size):
                    logp[b, banned] = -np.inf
        return logp

    def generate_many(self, prompts: Sequence[str], prefixes: np.ndarray | None = None,
                      max_new_tokens: int | None = None, num_beams: int | None = None) -> list[Generated]:
        """Decode several studies' reports in ONE batch (left-padded prompts; beams of all studies share
        the batch dimension); the same texts as generate() one by one. `prefixes`: [N, P, D] image
        tokens or None. Needs a decoder with `attention_mask`; without it, one study at a time.
        Each Generated.ms is the batch's time: every study waited for the whole batch."""
        if prefixes is not None and not self.has_prefix:
            raise ValueError("this decoder takes no image tokens (no prefix_embeds input)")
        if not self.has_mask:
            return [self.generate(p, None if prefixes is None else prefixes[i : i + 1], max_new_tokens, num_beams)
                    for i, p in enumerate(prompts)]
        return self._decode(list(prompts), prefixes, max_new_tokens, num_beams)

    def _decode(self, prompts: list[str], prefixes: np.ndarray | None, max_new_tokens: int | None,
                num_beams: int | None) -> list[Generated]:
        """Prefill all prompts (left-padded, masked) in one step, then greedy or beam search. Without a
        mask input only a single prompt may be given (no padding is needed then)."""
        if not prompts:
            return []
        beams = self.num_beams if num_beams is None else num_beams
        limit = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        start = time.perf_counter()
        encoded = [self.prompt_ids(p) for p in prompts]
        width = max(len(e) for e in encoded)
        pad = self.tokenizer.token_id(PAD)
        ids = [[pad] * (width - len(e)) + e for e in encoded]
        n_prefix = 0 if prefixes is None else prefixes.shape[1]
        mask = np.zeros((len(ids), n_prefix + width), dtype=np.int64)
        mask[:, :n_prefix] = 1
        for i, e in enumerate(encoded):
            mask[i, n_prefix + width - len(e):] = 1
        if prefixes is not None:
            prefixes = np.ascontiguousarray(prefixes, dtype=np.float32)
        logits, past = self._step_batch(ids, self._empty_past(len(ids)), mask, prefixes)
        tokens = (self._beam_many if beams > 1 else self._greedy_many)(logits, past, mask, limit, beams)
        ms = (time.perf_counter() - start) * 1000.0
        return [Generated(text=self.tokenizer.decode(t), token_ids=t, ms=ms) for t in tokens]

    def _greedy_many(self, logits, past, mask, limit: int, _beams: int) -> list[list[int]]:
        """Greedy decoding of one or more studies; a study's row leaves the batch at its <eos>."""
        n = len(logits)
        seqs: list[list[int]] = [[] for _ in range(n)]
        active = list(range(n))  # study index of each row
        for _step in range(limit):
            scores = logits.astype(np.float64)
            scores[:, self.suppressed] = -np.inf
            keep, nxt = [], []
            for row, study in enumerate(active):
                for banned in _banned_by_ngram(seqs[study], self.no_repeat_ngram_size):
                    scores[row, banned] = -np.inf
                tok = int(np.argmax(scores[row]))
                if tok != self.eos:
                    seqs[study].append(tok)
                    keep.append(row)
                    nxt.append(tok)
            if not keep or _step == limit - 1:
                break
            if len(keep) < len(active):  # a study finished: drop its row (otherwise the cache stays as it is)
                past = _reorder_rows(past, keep)
                mask = mask[keep]
            active = [active[r] for r in keep]
            mask = np.concatenate([mask, np.ones((len(keep), 1), dtype=np.int64)], axis=1)
            logits, past = self._step_batch([[t] for t in nxt], past, mask)
        return seqs

    def _beam_many(self, logits, past, mask, limit: int, k: int) -> list[list[int]]:
        """Beam search for one or more studies: each keeps its own k beams, finished hypotheses (ranked
        by sum(log p) / length ** length_penalty) and stopping rule (k finished, the best of them no
        worse than the best open beam); the rows of studies still open form one batch per step."""
        n = len(logits)
        seqs: dict[int, list[list[int]]] = {i: [[]] for i in range(n)}
        scores: dict[int, np.ndarray] = {i: np.zeros(1) for i in range(n)}
        finished: dict[int, list[tuple[float, list[int]]]] = {i: [] for i in range(n)}
        rows_of = {i: [i] for i in range(n)}  # the batch rows holding study i's beams, in beam order
        open_studies = list(range(n))
        for _step in range(limit):
            flat_seqs = [seq for i in open_studies for seq in seqs[i]]
            logp = self._log_probs(logits, flat_seqs)
            gather, next_tokens, still_open, new_rows = [], [], [], {}
            for i in open_studies:
                rows = rows_of[i]
                total = scores[i][:, None] + logp[rows[0] : rows[-1] + 1]  # a study's rows are contiguous
                order = _top(total, 2 * k)
                new_seqs, new_scores, parents = [], [], []
                for idx in order:
                    b, tok = divmod(int(idx), total.shape[1])
                    score = float(total[b, tok])
                    if not np.isfinite(score):
                        continue
                    if tok == self.eos:
                        finished[i].append((score / max(len(seqs[i][b]), 1) ** self.length_penalty, seqs[i][b]))
                    else:
                        new_seqs.append(seqs[i][b] + [tok])
                        new_scores.append(score)
                        parents.append(rows[b])
                    if len(new_seqs) == k:
                        break
                best_open = max(new_scores) / (len(new_seqs[0]) ** self.length_penalty) if new_seqs else -np.inf
                if not new_seqs or (len(finished[i]) >= k and max(f[0] for f in finished[i]) >= best_open):
                    continue  # done: its last open beams stay as they were (used when none finished)
                seqs[i], scores[i] = new_seqs, np.asarray(new_scores)
                new_rows[i] = list(range(len(gather), len(gather) + len(parents)))
                gather += parents
                next_tokens += [s[-1] for s in new_seqs]
                still_open.append(i)
            if not still_open or _step == limit - 1:
                break
            open_studies, rows_of = still_open, new_rows
            if gather != list(range(len(flat_seqs))):  # beams reordered or studies finished
                past = _reorder_rows(past, gather)
                mask = mask[gather]
            mask = np.concatenate([mask, np.ones((len(gather), 1), dtype=np.int64)], axis=1)
            logits, past = self._step_batch([[t] for t in next_tokens], past, mask)
        best = []
        for i in range(n):
            done = finished[i] or [(float(sc) / max(len(sq), 1) ** self.length_penalty, sq)
                                   for sc, sq in zip(scores[i], seqs[i])]
            best.append(max(done, key=lambda f: f[0])[1] if done else [])
        return best

    def warm_up(self) -> None:
        self.generate(build_prompt("none", "not assessed"), max_new_tokens=1, num_beams=1)
