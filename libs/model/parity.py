"""INT8 vs FP32 parity of the exported graphs (written into the manifest under metrics.parity_int8_vs_fp32).

Encoder: on the image validation split, per assessed label: decision agreement at the manifest
threshold, largest probability difference, AUROC of each graph and the delta (points = x100).
Decoder: on the first `parity_reports` reports of the report test split, with reference-label prompts
(paired data: with the images' tokens): identical-sequence rate, position-wise identical-token rate
(over the longer of the two outputs), BLEU-4 / ROUGE-L of each against the reference and the deltas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from libs.domain.labels import CHEXPERT_LABELS


def generate_all(decoder_path: Path, tokenizer_path: Path, prompts: list[str], prefixes=None, *,
                 max_new_tokens: int = 160, no_repeat_ngram_size: int = 0, num_beams: int = 1,
                 length_penalty: float = 1.0, progress: bool = False):
    from tqdm import tqdm

    from libs.bundle.decoder import ReportDecoder

    dec = ReportDecoder(decoder_path, tokenizer_path, max_new_tokens=max_new_tokens,
                        no_repeat_ngram_size=no_repeat_ngram_size, num_beams=num_beams, length_penalty=length_penalty)
    out = []
    for i, prompt in enumerate(tqdm(prompts, disable=not progress, leave=False, desc="generating")):
        out.append(dec.generate(prompt, None if prefixes is None else prefixes[i]))
    return out


def token_agreement(a: list[int], b: list[int]) -> float:
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return sum(x == y for x, y in zip(a, b)) / longest


def measure_parity(cfg, state, data, enc32: Path, enc8: Path, dec32: Path | None, dec8: Path | None,
                   tok_path: Path, progress: bool = True) -> dict:
    from libs.model.calibration import auroc
    from libs.model.export import normalized_images, run_encoder
    from libs.model.images import load_images_cached
    from libs.model.nlg import score_texts
    from libs.model.prompts import reference_prompt
    from libs.model.train import label_matrix

    cache = cfg.path(cfg.data.cache_dir)
    norm = state["normalization"]
    result: dict = {}
    recs = data.images_in("val") or [p.image for p in data.paired_in("val")]
    if cfg.export.parity_images:
        recs = recs[: cfg.export.parity_images]
    if recs:
        x = normalized_images(load_images_cached([r.path for r in recs], cfg.image_size, cache, progress), norm)
        p32 = run_encoder(enc32, x, ["probabilities"])["probabilities"]
        p8 = run_encoder(enc8, x, ["probabilities"])["probabilities"]
        labels = label_matrix(recs)
        enc = {"n_images": len(recs)}
        for label in cfg.assessed_labels:
            j = CHEXPERT_LABELS.index(label)
            thr = state["thresholds"][label]
            known = ~np.isnan(labels[:, j])
            a32, a8 = auroc(labels[known, j], p32[known, j]), auroc(labels[known, j], p8[known, j])
            enc[label] = {"label_agreement": float(np.mean((p32[:, j] >= thr) == (p8[:, j] >= thr))),
                          "max_abs_prob_diff": float(np.max(np.abs(p32[:, j] - p8[:, j]))),
                          "auroc_fp32": a32, "auroc_int8": a8, "auroc_delta_points": 100 * (a8 - a32)}
        result["encoder"] = enc
    if dec32 is not None and dec8 is not None:
        paired = data.paired_in("test") or data.paired_in("val")
        prefixes = None
        if state.get("image_tokens") and paired:
            reports = [p.report for p in paired][: cfg.export.parity_reports]
            imgs = load_images_cached([p.image.path for p in paired][: len(reports)], cfg.image_size, cache, progress)
            toks = run_encoder(enc8, normalized_images(imgs, norm), ["image_tokens"])["image_tokens"]
            prefixes = [toks[i:i + 1] for i in range(len(toks))]
        else:
            reports = (data.reports_in("test") or data.reports_in("val"))[: cfg.export.parity_reports]
        prompts = [reference_prompt(r) for r in reports]
        kw = dict(max_new_tokens=cfg.export.max_new_tokens, no_repeat_ngram_size=cfg.export.no_repeat_ngram_size,
                  num_beams=cfg.export.num_beams, length_penalty=cfg.export.length_penalty, progress=progress)
        g32 = generate_all(dec32, tok_path, prompts, prefixes, **kw)
        g8 = generate_all(dec8, tok_path, prompts, prefixes, **kw)
        refs = [r.text for r in reports]
        s32 = score_texts([g.text for g in g32], refs, meteor=False, bootstrap=0)
        s8 = score_texts([g.text for g in g8], refs, meteor=False, bootstrap=0)
        result["decoder"] = {
            "n_reports": len(reports), "prompts": "reference labels" + (" + image tokens" if prefixes else ""),
            "identical_sequence_rate": float(np.mean([a.token_ids == b.token_ids for a, b in zip(g32, g8)])),
            "identical_token_rate": float(np.mean([token_agreement(a.token_ids, b.token_ids) for a, b in zip(g32, g8)])),
            "bleu4_fp32": s32["BLEU-4"], "bleu4_int8": s8["BLEU-4"],
            "bleu4_delta_points": 100 * (s8["BLEU-4"] - s32["BLEU-4"]),
            "rougeL_fp32": s32["ROUGE-L"], "rougeL_int8": s8["ROUGE-L"],
            "rougeL_delta_points": 100 * (s8["ROUGE-L"] - s32["ROUGE-L"]),
            "ms_per_report_fp32": float(np.mean([g.ms for g in g32])),
            "ms_per_report_int8": float(np.mean([g.ms for g in g8])),
        }
    return result
