"""`cxr-report train`: the reference recipe, in stages, seeded, checkpointed every epoch and resumable.

Stages (each skipped when its data is absent, or when `epochs: 0`):
  detector  image encoder + 14-label head, masked BCE on the labelled images; then Platt calibration and
            thresholds on the image validation split;
  lm        the decoder on report text alone (image tokens dropped), prompts carrying clinical context and
            findings perturbed the way the head errs (libs.model.prompts);
  align     design stage 1, paired data only: the projector alone (encoder, head and LM frozen);
  full      design stage 2, paired data only: projector + LM (+ encoder/head when train_encoder).
Loss on paired data: 1.0 * report CE + 0.5 * detection BCE + 1e-4 * ||projector||^2 (config `loss`).

Outputs under `output_dir`: tokenizer.json, state.json (normalisation, calibration, thresholds, the
head's validation scores, metrics per stage), weights/ (fp16 safetensors shards <= 16 MiB),
checkpoints/last.pt (resume), train_log.jsonl.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libs.data.records import ImageRecord, PairedRecord, ReportRecord
from libs.domain.labels import CHEXPERT_LABELS, CRITICAL_LABELS
from libs.model.config import StageConfig, TrainConfig

log = logging.getLogger(__name__)
STAGES = ("detector", "lm", "align", "full")


# -- data -------------------------------------------------------------------------------------------

@dataclass
class Datasets:
    images: list[ImageRecord]
    reports: list[ReportRecord]
    paired: list[PairedRecord]

    def images_in(self, split: str) -> list[ImageRecord]:
        return [r for r in self.images if r.split == split]

    def reports_in(self, split: str) -> list[ReportRecord]:
        return [r for r in self.reports if r.split == split]

    def paired_in(self, split: str) -> list[PairedRecord]:
        return [p for p in self.paired if p.split == split]


def _limit(records: list, limit: int | None) -> list:
    if limit is None:
        return records
    out, seen = [], {}
    for r in records:
        split = r.split
        if seen.get(split, 0) < limit:
            out.append(r)
            seen[split] = seen.get(split, 0) + 1
    return out


def load_datasets(cfg: TrainConfig) -> Datasets:
    d = cfg.data
    paired: list[PairedRecord] = []
    if d.paired is not None:
        if d.paired.kind == "mimic":
            from libs.data.mimic import load_mimic_cxr

            paired = load_mimic_cxr(cfg.path(d.paired.root), cfg.path(d.paired.reports_root), uncertain=d.paired.uncertain)
        else:
            from libs.data.iu import load_iu_xray

            paired = load_iu_xray(cfg.path(d.paired.root), cfg.path(d.paired.reports_root))
        paired = _limit(paired, d.paired.limit)
    images: list[ImageRecord] = []
    if d.images.kind == "kermany":
        from libs.data.kermany import DEFAULT_ROOT, load_kermany

        images = load_kermany(cfg.path(d.images.root) or DEFAULT_ROOT, cfg.path(d.images.split_file))
    elif d.images.kind in ("mimic", "iu_xray"):
        images = [p.image for p in paired]
    images = _limit(images, d.images.limit)
    reports: list[ReportRecord] = []
    if d.reports.kind == "iu":
        from libs.data.iu import load_iu_corpus

        reports = load_iu_corpus(cfg.path(d.reports.source), cfg.path(d.reports.split_file))
    elif d.reports.kind == "paired":
        reports = [p.report for p in paired]
    reports = _limit(reports, d.reports.limit)
    return Datasets(images=images, reports=reports, paired=paired)


# -- helpers ----------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str):
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cosine_lambda(total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def label_matrix(records: list[ImageRecord]) -> np.ndarray:
    return np.asarray([r.labels for r in records], dtype=np.float32).reshape(len(records), len(CHEXPERT_LABELS))


class Tokenized:
    """Turns (prompt, report) pairs into right-padded id/target batches (HF tokenizers for speed;
    libs.bundle.bpe reproduces it exactly at serving time)."""

    def __init__(self, tokenizer_path: Path, max_report_tokens: int, max_prompt_tokens: int = 96):
        from tokenizers import Tokenizer

        from libs.bundle.decoder import BOS, EOS, PAD, SEP

        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.pad, self.bos, self.eos, self.sep = (self.tok.token_to_id(t) for t in (PAD, BOS, EOS, SEP))
        self.max_report, self.max_prompt = max_report_tokens, max_prompt_tokens
        self.vocab_size = self.tok.get_vocab_size()

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        from libs.bundle.bpe import normalize_text

        return [e.ids for e in self.tok.encode_batch([normalize_text(t) for t in texts], add_special_tokens=False)]

    def sequences(self, prompts: list[str], reports: list[str]) -> list[tuple[list[int], int]]:
        """[(ids, prompt_len)] with ids = <bos> prompt <sep> report <eos>."""
        out = []
        for p, r in zip(self.encode_many(prompts), self.encode_many(reports)):
            head = [self.bos, *p[: self.max_prompt], self.sep]
            out.append((head + r[: self.max_report] + [self.eos], len(head)))
        return out

    def batch(self, seqs: list[tuple[list[int], int]]):
        import torch

        from libs.model.vlm import IGNORE

        width = max(len(s) for s, _ in seqs) - 1
        ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
        targets = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
        for i, (s, plen) in enumerate(seqs):
            inp, tgt = s[:-1], s[1:]
            ids[i, : len(inp)] = torch.tensor(inp)
            t = torch.tensor(tgt)
            t[: plen - 1] = IGNORE  # the prompt is given, not predicted: score from the first report token on
            targets[i, : len(tgt)] = t
        return ids, targets


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (less padding), in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 32
    batches = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i:i + chunk], key=lambda j: lengths[j])
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


# -- trainer ----------------------------------------------------------------------------------------

class Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool = True, progress: bool = True, restart_from: str | None = None):
        import torch

        if restart_from is not None and restart_from not in STAGES[1:]:
            raise ValueError(f"restart_from must be one of {', '.join(STAGES[1:])} (use a fresh run for detector)")
        self.cfg, self.resume, self.progress, self.restart_from = cfg, resume, progress, restart_from
        self.out = cfg.out
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        self.state: dict = {"config": cfg.model_dump(mode="json"), "stages": {}}
        self.log_path = self.out / "train_log.jsonl"
        if not resume:  # a fresh run must not pick up anything of an earlier one
            for stale in (self.log_path, self._ckpt_path(), self.out / "tokenizer.json", self.out / "state.json"):
                stale.unlink(missing_ok=True)

    # logging / checkpoints
    def _log(self, **event) -> None:
        event = {"time": round(time.time(), 1), **event}
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")
        log.info("%s", event)

    def _bar(self, iterable, **kw):
        from tqdm import tqdm

        return tqdm(iterable, disable=not self.progress, leave=False, dynamic_ncols=True, **kw)

    def _ckpt_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def _save_checkpoint(self, stage: str, epoch: int, optimizer, scheduler) -> None:
        import torch

        path = self._ckpt_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"stage": stage, "epoch": epoch, "model": self.model.state_dict(),
                    "optimizer": optimizer.state_dict() if optimizer else None,
                    "scheduler": scheduler.state_dict() if scheduler else None,
                    "state": self.state, "torch_rng": torch.get_rng_state(), "py_rng": random.getstate()}, tmp)
        tmp.replace(path)

    def _load_checkpoint(self) -> dict | None:
        import torch

        path = self._ckpt_path()
        if not (self.resume and path.is_file()):
            return None
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(ckpt["model"])
        self.state = ckpt["state"]
        torch.set_rng_state(ckpt["torch_rng"])
        random.setstate(ckpt["py_rng"])
        self._log(event="resume", stage=ckpt["stage"], epoch=ckpt["epoch"])
        return ckpt

    # setup
    def _tokenizer(self, data: Datasets) -> Path:
        from libs.model.tokenizer import train_tokenizer

        path = self.out / "tokenizer.json"
        if path.is_file() and self.resume:
            return path
        train = data.reports_in("train") or data.reports
        texts = [r.text for r in train] + [r.context.indication or "" for r in train]
        # Prompt vocabulary (label names, yes/no, scores) must be in the tokenizer too.
        from libs.bundle.decoder import build_prompt, context_prompt, findings_prompt

        texts += [build_prompt(context_prompt(age=a, sex=s, has_prior=True),
                               findings_prompt([(label, (a % 101) / 100, bool(a % 2)) for label in CHEXPERT_LABELS]))
                  for a in range(0, 100) for s in ("M", "F")]
        train_tokenizer(texts, self.cfg.model.vocab_size, path)
        return path

    def _normalization(self, train_images: np.ndarray | None) -> dict:
        """mean/std of the training images as the encoder sees them (after the per-image stretch when
        the config asks for one); the manifest carries the result to the runner."""
        from libs.bundle.normalize import stretch_images
        from libs.model.images import to_unit

        stretch = self.cfg.input_stretch
        spec = {"stretch": {"low": float(stretch[0]), "high": float(stretch[1])}} if stretch else {}
        if train_images is None or len(train_images) == 0:
            return {"mean": 0.5, "std": 0.25, **spec}
        sample = train_images[:: max(1, len(train_images) // 1024)]
        x = to_unit(sample)
        if stretch:
            x = stretch_images(x, *spec["stretch"].values())
        x = x.astype(np.float64)
        return {"mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4), **spec}

    def run(self) -> dict:
        import torch

        from libs.model.images import load_images_cached
        from libs.model.vlm import ReportModel

        cfg = self.cfg
        seed_everything(cfg.seed)
        started = time.time()
        data = load_datasets(cfg)
        self._log(event="data", images={s: len(data.images_in(s)) for s in ("train", "val", "test")},
                  reports={s: len(data.reports_in(s)) for s in ("train", "val", "test")},
                  paired={s: len(data.paired_in(s)) for s in ("train", "val", "test")}, device=str(self.device))
        cache = cfg.path(cfg.data.cache_dir)
        self.arrays = {}
        for split in ("train", "val"):
            recs = data.images_in(split)
            if recs:
                self.arrays[split] = load_images_cached([r.path for r in recs], cfg.image_size, cache, self.progress)
        self.paired_arrays = {}
        for split in ("train", "val"):
            recs = data.paired_in(split)
            if recs:
                self.paired_arrays[split] = load_images_cached([p.image.path for p in recs], cfg.image_size, cache,
                                                               self.progress)
        tok_path = self._tokenizer(data) if data.reports else None
        self.tokens = Tokenized(tok_path, cfg.model.max_report_tokens) if tok_path else None
        vocab = self.tokens.vocab_size if self.tokens else 8
        self.model = ReportModel(cfg.model, vocab).to(self.device)
        ckpt = self._load_checkpoint()
        if self.restart_from is not None:
            ckpt = self._restart(self.restart_from, vocab)
        self.state.setdefault("normalization", self._normalization(self.arrays.get("train")))
        self.state["assessed_labels"] = list(cfg.assessed_labels)
        self.state["name"], self.state["version"] = cfg.name, cfg.version
        done = set(self.state.get("done", []))
        for stage in STAGES:
            if stage in done:
                continue
            resume_from = ckpt if ckpt is not None and ckpt["stage"] == stage else None
            getattr(self, f"_stage_{stage}")(data, getattr(cfg.stages, stage), resume_from)
            done.add(stage)
            self.state["done"] = sorted(done, key=STAGES.index)
            self._save_checkpoint(stage, -1, None, None)
        self.state["train_seconds"] = round(time.time() - started, 1)
        self._export_weights(tok_path)
        return self.state

    def _restart(self, stage: str, vocab: int) -> None:
        """Keep the stages before `stage`, re-initialise the modules `stage` and later ones train."""
        import torch

        from libs.model.decoder import DecoderLM
        from libs.model.vlm import Projector

        first = STAGES.index(stage)
        self.state["done"] = [s for s in self.state.get("done", []) if STAGES.index(s) < first]
        for s in STAGES[first:]:
            self.state["stages"].pop(s, None)
        self.state.pop("image_tokens", None)
        torch.manual_seed(self.cfg.seed + first)
        d = self.cfg.model.decoder
        if first <= STAGES.index("lm"):
            self.model.decoder = DecoderLM(vocab, d.d_model, d.layers, d.heads, d.ff, d.max_positions,
                                           d.dropout).to(self.device)
        self.model.projector = Projector(self.model.detector.channels, d.d_model).to(self.device)
        self._log(event="restart", stage=stage, kept=self.state["done"])
        return None

    def _export_weights(self, tok_path: Path | None) -> None:
        from libs.model.checkpoint import save_sharded

        save_sharded(self.model.state_dict(), self.out / "weights",
                     metadata={"name": self.cfg.name, "version": self.cfg.version})
        (self.out / "state.json").write_text(json.dumps(self.state, indent=1) + "\n", encoding="utf-8")
        self._log(event="saved", weights=str(self.out / "weights"))

    # generic epoch loop
    def _fit(self, stage: str, sc: StageConfig, params, batches_fn, loss_fn, resume_from, eval_fn=None,
             train_modules=None) -> None:
        import torch

        if sc.epochs <= 0:
            self._log(event="skip", stage=stage, reason="epochs: 0")
            return
        params = [p for p in params if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": sc.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=sc.lr)
        steps_per_epoch = max(1, math.ceil(len(batches_fn(0, dry=True)) / sc.grad_accum))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_lambda(steps_per_epoch * sc.epochs,
                                                                               sc.warmup_fraction))
        start_epoch = 0
        if resume_from is not None and resume_from["epoch"] >= 0 and resume_from["optimizer"] is not None:
            optimizer.load_state_dict(resume_from["optimizer"])
            scheduler.load_state_dict(resume_from["scheduler"])
            start_epoch = resume_from["epoch"] + 1
        use_amp = self.device.type == "cuda"
        for epoch in range(start_epoch, sc.epochs):
            self.model.train()
            if train_modules is not None:
                self.model.eval()
                for m in train_modules:
                    m.train()
            batches = batches_fn(epoch)
            total, count, t0 = 0.0, 0, time.time()
            bar = self._bar(batches, desc=f"{stage} {epoch + 1}/{sc.epochs}", unit="batch")
            optimizer.zero_grad(set_to_none=True)
            for i, batch in enumerate(bar):
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = loss_fn(batch)
                (loss / sc.grad_accum).backward()
                if (i + 1) % sc.grad_accum == 0 or i + 1 == len(batches):
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                total += float(loss.detach())
                count += 1
                bar.set_postfix(loss=f"{total / count:.4f}")
            metrics = {"train_loss": total / max(count, 1), "seconds": round(time.time() - t0, 1)}
            if eval_fn is not None:
                self.model.eval()
                with torch.no_grad():
                    metrics.update(eval_fn())
            self._log(event="epoch", stage=stage, epoch=epoch + 1, **metrics)
            self.state["stages"].setdefault(stage, {})["last_epoch"] = {"epoch": epoch + 1, **metrics}
            self._save_checkpoint(stage, epoch, optimizer, scheduler)

    # image helpers
    def _image_batch(self, arr: np.ndarray, idx, augment: bool, generator=None):
        import torch

        from libs.model.images import CACHE_SCALE, normalize_torch
        from libs.model.images import augment as do_augment

        x = torch.from_numpy(arr[idx].astype(np.float32)).div_(CACHE_SCALE)[:, None]
        if augment and self.cfg.augment:
            x = do_augment(x, generator, "basic" if self.cfg.augment is True else self.cfg.augment)
        return normalize_torch(x, self.state["normalization"]).to(self.device)

    def _predict_logits(self, arr: np.ndarray, batch_size: int = 64) -> np.ndarray:
        import torch

        self.model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(arr), batch_size):
                logits, _ = self.model.detector(self._image_batch(arr, slice(i, i + batch_size), False))
                out.append(logits.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(CHEXPERT_LABELS)), np.float32)

    # stages
    def _stage_detector(self, data: Datasets, sc: StageConfig, resume_from) -> None:
        import torch

        from libs.model.calibration import auroc
        from libs.model.vlm import detection_loss

        train_recs = data.images_in("train")
        if not train_recs:
            self._log(event="skip", stage="detector", reason="no labelled images")
            return
        arr, labels = self.arrays["train"], torch.from_numpy(label_matrix(train_recs))
        gen = torch.Generator().manual_seed(self.cfg.seed)
        val_recs = data.images_in("val")
        val_labels = label_matrix(val_recs)

        def batches(epoch, dry=False):
            rng = np.random.default_rng(self.cfg.seed + epoch)
            order = rng.permutation(len(arr))
            return [order[i:i + sc.batch_size] for i in range(0, len(order), sc.batch_size)]

        def loss_fn(idx):
            idx = np.sort(idx)
            logits, _ = self.model.detector(self._image_batch(arr, idx, True, gen))
            return detection_loss(logits, labels[idx].to(self.device))

        def evaluate():
            if not val_recs:
                return {}
            logits = self._predict_logits(self.arrays["val"])
            out = {}
            for label in self.cfg.assessed_labels:
                j = CHEXPERT_LABELS.index(label)
                known = ~np.isnan(val_labels[:, j])
                out[f"val_auroc_{label}"] = round(auroc(val_labels[known, j], logits[known, j]), 4)
            return out

        self._fit("detector", sc, self.model.detector.parameters(), batches, loss_fn, resume_from, evaluate)
        self._calibrate(data)

    def _calibrate(self, data: Datasets) -> None:
        """Platt scaling and thresholds per assessed label on the image validation split (train split when
        there is none, which the state records)."""
        from libs.model.calibration import auroc, choose_threshold, fit_platt, operating_point, sigmoid

        split = "val" if data.images_in("val") else "train"
        recs = data.images_in(split)
        if not recs:
            return
        logits = self._predict_logits(self.arrays[split])
        labels = label_matrix(recs)
        calib, thresholds, scores, report = {}, {}, {}, {}
        t = self.cfg.thresholds
        for label in self.cfg.assessed_labels:
            j = CHEXPERT_LABELS.index(label)
            known = ~np.isnan(labels[:, j])
            y, z = labels[known, j], logits[known, j]
            a, b = fit_platt(z, y)
            p = sigmoid(a * z + b)
            rule = f"sensitivity:{t.critical_sensitivity}" if label in CRITICAL_LABELS else t.rules.get(label, t.default_rule)
            thr = choose_threshold(y, p, rule) if len(y) else 0.5
            calib[label], thresholds[label] = [a, b], thr
            scores[label] = {"pos": [round(float(v), 4) for v in p[y == 1]], "neg": [round(float(v), 4) for v in p[y == 0]]}
            report[label] = {"rule": rule, "auroc": auroc(y, z), "n": int(len(y)), "positives": int(y.sum()),
                             **operating_point(y, p, thr)}
        self.state.update(calibration=calib, thresholds=thresholds, val_scores=scores, calibration_split=split)
        self.state["stages"].setdefault("detector", {})["calibration"] = report
        self._log(event="calibrated", split=split, **{k: {kk: v[kk] for kk in ("auroc", "threshold", "sensitivity",
                                                                              "specificity")} for k, v in report.items()})

    def _head_model(self):
        from libs.model.prompts import HeadErrorModel

        if not self.state.get("thresholds"):
            return None
        return HeadErrorModel(self.state["val_scores"], self.state["thresholds"])

    def _text_batches(self, records: list[ReportRecord], sc: StageConfig, epoch: int, deterministic: bool = False,
                      without_findings: bool = False):
        from libs.bundle.decoder import build_prompt
        from libs.model.prompts import context_text, reference_prompt, training_prompt

        rng = random.Random(self.cfg.seed * 1000 + epoch)
        head = self._head_model()
        if without_findings:
            prompts = [build_prompt(context_text(r.context), "not assessed") for r in records]
        elif deterministic:
            prompts = [reference_prompt(r) for r in records]
        else:
            prompts = [training_prompt(r, rng, self.cfg.findings_noise, head) for r in records]
        seqs = self.tokens.sequences(prompts, [r.text for r in records])
        batches = length_batches([len(s) for s, _ in seqs], sc.batch_size, rng)
        return seqs, batches

    def _stage_lm(self, data: Datasets, sc: StageConfig, resume_from) -> None:
        from libs.model.vlm import report_loss

        train = data.reports_in("train")
        if not train or self.tokens is None:
            self._log(event="skip", stage="lm", reason="no reports")
            return
        factor = self.cfg.findings_noise.oversample_assessed
        if factor > 1:
            from libs.model.prompts import POSITIVE_STATUSES

            extra = [r for r in train if any(r.statuses.get(label) in POSITIVE_STATUSES
                                             for label in self.cfg.assessed_labels)]
            train = train + extra * (factor - 1)
            self._log(event="oversample", stage="lm", reports=len(extra), factor=factor, epoch_size=len(train))
        val = data.reports_in("val")
        cache: dict[int, tuple] = {}

        def batches(epoch, dry=False):
            seqs, order = self._text_batches(train, sc, epoch)
            cache[epoch] = seqs
            return [(epoch, b) for b in order]

        def loss_fn(item):
            epoch, b = item
            ids, targets = self.tokens.batch([cache[epoch][i] for i in b])
            logits, _ = self.model.decoder(ids.to(self.device))
            return report_loss(logits, targets.to(self.device))

        def evaluate():
            if not val:
                return {}
            out = {}
            # The gap between the two says how much the decoder uses the injected findings.
            for key, no_findings in (("val_loss_reference_prompts", False), ("val_loss_without_findings", True)):
                seqs, order = self._text_batches(val, sc, 0, deterministic=True, without_findings=no_findings)
                total, n = 0.0, 0
                for b in order:
                    ids, targets = self.tokens.batch([seqs[i] for i in b])
                    logits, _ = self.model.decoder(ids.to(self.device))
                    k = int((targets != -100).sum())
                    total += float(report_loss(logits, targets.to(self.device))) * k
                    n += k
                out[key] = round(total / max(n, 1), 4)
            return out

        self._fit("lm", sc, self.model.decoder.parameters(), batches, loss_fn, resume_from, evaluate)

    def _paired_stage(self, stage: str, data: Datasets, sc: StageConfig, resume_from) -> None:
        import torch

        from libs.model.vlm import detection_loss, report_loss

        train = data.paired_in("train")
        if not train or self.tokens is None:
            self._log(event="skip", stage=stage, reason="no paired image-report data")
            return
        m = self.model
        arr = self.paired_arrays["train"]
        labels = torch.from_numpy(label_matrix([p.image for p in train]))
        reports = [p.report for p in train]
        gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        lw = self.cfg.loss
        if stage == "align":
            for p in m.parameters():
                p.requires_grad_(False)
            for p in m.projector.parameters():
                p.requires_grad_(True)
            modules = [m.projector]
        else:
            for p in m.parameters():
                p.requires_grad_(False)
            modules = [m.projector, m.decoder] + ([m.detector] if sc.train_encoder else [])
            for mod in modules:
                for p in mod.parameters():
                    p.requires_grad_(True)
        cache: dict[int, list] = {}

        def batches(epoch, dry=False):
            seqs, order = self._text_batches(reports, sc, epoch)
            cache[epoch] = seqs
            return [(epoch, b) for b in order]

        def loss_fn(item):
            epoch, b = item
            idx = np.asarray(b)
            ids, targets = self.tokens.batch([cache[epoch][i] for i in b])
            x = self._image_batch(arr, idx, True, gen)
            logits, features = m.detector(x)
            prefix = m.image_tokens(features)
            lm_logits, _ = m.decoder(ids.to(self.device), prefix_embeds=prefix)
            loss = lw.report * report_loss(lm_logits, targets.to(self.device), prefix.shape[1])
            loss = loss + lw.detect * detection_loss(logits, labels[idx].to(self.device))
            return loss + lw.projector_l2 * m.projector.l2()

        val = data.paired_in("val")

        def evaluate():
            if not val:
                return {}
            varr = self.paired_arrays["val"]
            seqs, order = self._text_batches([p.report for p in val], sc, 0, deterministic=True)
            total, n = 0.0, 0
            for b in order:
                ids, targets = self.tokens.batch([seqs[i] for i in b])
                _, features = m.detector(self._image_batch(varr, np.asarray(b), False))
                prefix = m.image_tokens(features)
                lm_logits, _ = m.decoder(ids.to(self.device), prefix_embeds=prefix)
                k = int((targets != -100).sum())
                total += float(report_loss(lm_logits, targets.to(self.device), prefix.shape[1])) * k
                n += k
            return {"val_report_loss": round(total / max(n, 1), 4)}

        self._fit(stage, sc, [p for mod in modules for p in mod.parameters()], batches, loss_fn, resume_from,
                  evaluate, train_modules=modules)
        for p in m.parameters():
            p.requires_grad_(True)
        self.state["image_tokens"] = True
        if stage == "full" and sc.train_encoder and data.images_in("val"):
            self._calibrate(data)

    def _stage_align(self, data, sc, resume_from) -> None:
        self._paired_stage("align", data, sc, resume_from)

    def _stage_full(self, data, sc, resume_from) -> None:
        self._paired_stage("full", data, sc, resume_from)


def train(cfg: TrainConfig, *, resume: bool = True, progress: bool = True, restart_from: str | None = None) -> dict:
    return Trainer(cfg, resume=resume, progress=progress, restart_from=restart_from).run()
