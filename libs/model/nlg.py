"""Report-generation metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap) with bootstrap CIs.

Text is compared after `tokenize`: lower case, every character other than a-z, 0-9 becomes a space
(punctuation dropped, as in the R2Gen line of IU/MIMIC papers), whitespace-split. The de-identification
mark "XXXX" of IU reports stays a word ("xxxx").

Corpus BLEU is computed here from per-report n-gram statistics (identical to pycocoevalcap's Bleu for
one reference per report, checked in tests) so bootstrap resamples are cheap; ROUGE-L, METEOR and
CIDEr CIs resample the per-report scores pycocoevalcap returns (for CIDEr the document frequencies stay
those of the full test set, an approximation).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> str:
    return " ".join(_NON_ALNUM.sub(" ", (text or "").lower()).split())


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu_stats(hyp: str, ref: str) -> np.ndarray:
    """[hyp_len, ref_len, match_1..4, total_1..4] for one tokenised hypothesis / reference pair."""
    h, r = hyp.split(), ref.split()
    out = [len(h), len(r)]
    matches, totals = [], []
    for n in range(1, 5):
        hn, rn = _ngrams(h, n), _ngrams(r, n)
        matches.append(sum(min(c, rn[g]) for g, c in hn.items()))
        totals.append(max(len(h) - n + 1, 0))
    return np.asarray(out + matches + totals, dtype=np.float64)


def corpus_bleu(stats: np.ndarray) -> list[float]:
    """BLEU-1..4 from summed stats, pycocoevalcap's formula (tiny = 1e-9 smoothing, brevity penalty)."""
    s = stats.sum(axis=0)
    hyp_len, ref_len = s[0], s[1]
    tiny, small = 1e-9, 1e-15
    out, log_sum = [], 0.0
    for n in range(4):
        # (a resample with no n-grams of this order at all scores ~0, where pycocoevalcap would divide by 1e-15)
        log_sum += math.log((s[2 + n] + tiny) / (s[6 + n] + small)) if s[6 + n] > 0 else math.log(tiny)
        out.append(math.exp(log_sum / (n + 1)))
    if hyp_len < ref_len:
        bp = math.exp(1 - ref_len / max(hyp_len, small))
        out = [b * bp for b in out]
    return out


def score_texts(hyps: list[str], refs: list[str], *, meteor: bool = True, bootstrap: int = 1000,
                seed: int = 0) -> dict:
    """Corpus metrics + 95 % bootstrap CIs (over reports) for aligned hypothesis/reference lists."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    h = [tokenize(x) or "empty" for x in hyps]
    r = [tokenize(x) or "empty" for x in refs]
    gts = {i: [r[i]] for i in range(len(r))}
    res = {i: [h[i]] for i in range(len(h))}
    stats = np.stack([bleu_stats(a, b) for a, b in zip(h, r)])
    bleu = corpus_bleu(stats)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    out = {f"BLEU-{n + 1}": bleu[n] for n in range(4)}
    out.update({"ROUGE-L": float(rouge), "CIDEr": float(cider)})
    per = {"ROUGE-L": np.asarray(rouge_each, dtype=np.float64), "CIDEr": np.asarray(cider_each, dtype=np.float64)}
    if meteor:
        try:
            from pycocoevalcap.meteor.meteor import Meteor

            m = Meteor()
            score, each = m.compute_score(gts, res)
            out["METEOR"] = float(score)
            per["METEOR"] = np.asarray(each, dtype=np.float64)
            try:
                m.close()
            except Exception:
                pass
        except Exception as exc:  # Java missing or METEOR failing must not lose the other metrics
            out["METEOR"] = None
            out["METEOR_error"] = f"{type(exc).__name__}: {exc}"
    n = len(h)
    ci = {}
    if bootstrap and n > 1:
        rng = np.random.default_rng(seed)
        draws = {k: [] for k in ("BLEU-4", "ROUGE-L", "CIDEr", "METEOR") if k in out and out[k] is not None}
        for _ in range(bootstrap):
            idx = rng.integers(0, n, n)
            if "BLEU-4" in draws:
                draws["BLEU-4"].append(corpus_bleu(stats[idx])[3])
            for k in ("ROUGE-L", "CIDEr", "METEOR"):
                if k in draws:
                    draws[k].append(float(per[k][idx].mean()))
        ci = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in draws.items()}
    out["ci95"] = ci
    out["n"] = n
    return out
