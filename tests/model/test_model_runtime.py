"""The decoder runtime the services use (libs.bundle.bpe / libs.bundle.decoder) against the training side."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from libs.bundle.bpe import BPETokenizer, normalize_text  # noqa: E402
from libs.bundle.decoder import (  # noqa: E402
    ReportDecoder,
    build_prompt,
    context_prompt,
    findings_prompt,
)
from libs.model.tokenizer import train_tokenizer  # noqa: E402

TEXTS = [
    "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
    "Right lower lobe opacity concerning for pneumonia. Small left pleural effusion, stable since XXXX.",
    "Post-sternotomy wires; mild cardiomegaly (CTR 0.55). No pneumothorax!",
    "Degenerative changes of the thoracic spine.  Calcified granuloma,\nleft upper lobe.",
]


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(TEXTS * 20, vocab_size=200, out_path=path)
    return path


def test_pure_python_bpe_matches_tokenizers(tokenizer_file):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tokenizer_file))
    py = BPETokenizer.from_file(tokenizer_file)
    probes = TEXTS + ["context: age 54; female; indication: fever | findings: pneumonia yes 0.9",
                      "Unseen wordz like bronchiectasis and ünïcode é", ""]
    for text in probes:
        assert py.encode(text) == hf.encode(normalize_text(text), add_special_tokens=False).ids, text
    assert py.decode(py.encode(TEXTS[0])) == TEXTS[0]


def test_pure_python_bpe_matches_on_the_iu_corpus(tmp_path):
    """The real tokenizer setting on the real corpus (read at run time from the wheel, never stored)."""
    from tokenizers import Tokenizer

    from libs.data.iu import load_iu_corpus

    records = load_iu_corpus()
    texts = [r.text for r in records]
    train_tokenizer(texts[:1500], vocab_size=1000, out_path=tmp_path / "t.json")
    hf, py = Tokenizer.from_file(str(tmp_path / "t.json")), BPETokenizer.from_file(tmp_path / "t.json")
    for text in texts[1500:2500]:
        assert py.encode(text) == hf.encode(normalize_text(text), add_special_tokens=False).ids


def test_prompt_format():
    ctx = context_prompt(age=67, sex="M", indication=" Shortness\nof breath ", has_prior=True)
    assert ctx == "age 67; male; indication: Shortness of breath; prior study"
    assert context_prompt() == "none"
    f = findings_prompt([("Pneumonia", 0.934, True), ("Edema", 0.0, False), ("Cardiomegaly", 0.1, False)])
    assert f == "positive: pneumonia 0.93 | negative: cardiomegaly 0.10, edema 0.00"  # CheXpert order
    assert findings_prompt([("Pneumonia", 0.2, False)]) == "positive: none | negative: pneumonia 0.20"
    assert findings_prompt([]) == "not assessed"
    # v1 (bundles <= 1.2.x): one decimal, so a positive at 0.93 and a negative at 0.88 read 0.9 alike.
    v1 = findings_prompt([("Pneumonia", 0.934, True)], "cxr-findings-v1")
    assert v1 == "positive: pneumonia 0.9 | negative: none"
    assert findings_prompt([("Pneumonia", 0.88, False)], "cxr-findings-v1") == "positive: none | negative: pneumonia 0.9"
    with pytest.raises(ValueError, match="unknown prompt format"):
        findings_prompt([], "cxr-findings-v9")
    assert build_prompt(ctx, f) == f"{f} | context: age 67; male; indication: Shortness of breath; prior study"


@pytest.mark.parametrize("image_tokens", [False, True])
def test_exported_decoder_step_matches_torch(tmp_path, tokenizer_file, image_tokens):
    """KV-cache ONNX steps give the logits of a full torch forward, and greedy generation agrees."""
    from libs.model.decoder import DecoderLM
    from libs.model.export import export_decoder

    torch.manual_seed(0)
    vocab = BPETokenizer.from_file(tokenizer_file).vocab_size

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = DecoderLM(vocab, d_model=32, layers=2, heads=2, ff=64, max_positions=128, dropout=0.0)

    model = Holder().eval()
    path = export_decoder(model, tmp_path / "decoder.onnx", image_tokens)
    dec = ReportDecoder(path, tokenizer_file, max_new_tokens=12)
    assert dec.n_layers == 2 and dec.has_prefix == image_tokens
    prompt = build_prompt("age 50", "pneumonia yes 0.8")
    prefix = np.random.default_rng(0).normal(size=(1, 3, 32)).astype(np.float32) if image_tokens else None
    out = dec.generate(prompt, prefix)
    assert len(out.token_ids) <= 12
    # torch greedy without cache over the same prompt
    ids = dec.prompt_ids(prompt)
    with torch.no_grad():
        seq = list(ids)
        gen = []
        for _ in range(len(out.token_ids) + (1 if len(out.token_ids) < 12 else 0)):
            logits, _ = model.decoder(torch.tensor([seq]), None if prefix is None else torch.from_numpy(prefix))
            nxt = int(logits[0, -1].argmax())
            if nxt == dec.eos:
                break
            gen.append(nxt)
            seq.append(nxt)
            if len(gen) == 12:
                break
    assert gen == out.token_ids
    # and the first step's logits agree numerically
    past = [np.zeros((1, 2, 0, 16), np.float32) for _ in range(4)]
    logits = dec._session.run(dec._output_names, dec.feed([ids], past, prefix))[0]
    with torch.no_grad():
        ref, _ = model.decoder(torch.tensor([ids]), None if prefix is None else torch.from_numpy(prefix))
    np.testing.assert_allclose(logits[0], ref[0, -1].numpy(), atol=1e-4)


def test_beam_search_runs_on_the_batch_dimension(tmp_path, tokenizer_file):
    from libs.model.decoder import DecoderLM
    from libs.model.export import export_decoder

    torch.manual_seed(1)

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = DecoderLM(BPETokenizer.from_file(tokenizer_file).vocab_size, d_model=32, layers=1, heads=2,
                                     ff=64, max_positions=128, dropout=0.0)

    dec = ReportDecoder(export_decoder(Holder().eval(), tmp_path / "d.onnx", False), tokenizer_file,
                        max_new_tokens=10, num_beams=3, no_repeat_ngram_size=2)
    out = dec.generate(build_prompt("none", "not assessed"))
    assert 0 < len(out.token_ids) <= 10 and dec.eos not in out.token_ids
    pairs = list(zip(out.token_ids, out.token_ids[1:]))
    assert len(pairs) == len(set(pairs))  # no repeated bigram


def test_no_repeat_ngram_blocks_repeats():
    from libs.bundle.decoder import _banned_by_ngram

    assert _banned_by_ngram([1, 2, 3, 1, 2], 3) == {3}
    assert _banned_by_ngram([1, 2, 3], 0) == set()


def _holder(vocab: int, seed: int, layers: int = 2):
    from libs.model.decoder import DecoderLM

    torch.manual_seed(seed)

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = DecoderLM(vocab, d_model=32, layers=layers, heads=2, ff=64, max_positions=128, dropout=0.0)

    return Holder().eval()


PROMPTS = [build_prompt("none", "not assessed"),
           build_prompt("age 50; male; indication: cough and fever for three days", "positive: pneumonia 0.9 | negative: none"),
           build_prompt("age 7", "positive: none | negative: pneumonia 0.1"),
           build_prompt("prior study", "positive: cardiomegaly 1.0, pleural effusion 0.6 | negative: edema 0.0")]


@pytest.mark.parametrize("image_tokens", [False, True])
def test_left_padded_rows_compute_what_they_would_alone(tmp_path, tokenizer_file, image_tokens):
    """The exported step with attention_mask: a padded row's logits equal its unpadded run."""
    from libs.model.export import export_decoder

    model = _holder(BPETokenizer.from_file(tokenizer_file).vocab_size, 3)
    dec = ReportDecoder(export_decoder(model, tmp_path / "d.onnx", image_tokens), tokenizer_file)
    assert dec.has_mask
    short, long = dec.prompt_ids(PROMPTS[0]), dec.prompt_ids(PROMPTS[1])
    assert len(short) < len(long)
    prefix = np.random.default_rng(0).normal(size=(2, 3, 32)).astype(np.float32) if image_tokens else None
    n_prefix = 3 if image_tokens else 0
    pad = len(long) - len(short)
    mask = np.ones((2, n_prefix + len(long)), dtype=np.int64)
    mask[0, n_prefix:n_prefix + pad] = 0
    ids = [[0] * pad + short, long]
    out = dec._session.run(dec._output_names, dec.feed(ids, dec._empty_past(2), prefix, mask))
    for row, alone in ((0, short), (1, long)):
        ref = dec._session.run(dec._output_names, dec.feed([alone], dec._empty_past(1),
                                                           None if prefix is None else prefix[row:row + 1]))
        np.testing.assert_allclose(out[0][row], ref[0][0], atol=1e-4)
    # the next step, with the cache, too
    step_mask = np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1)
    nxt = dec._session.run(dec._output_names, dec.feed([[5], [5]], out[1:], None, step_mask))
    ref_short = dec._session.run(dec._output_names, dec.feed([short], dec._empty_past(1),
                                                             None if prefix is None else prefix[:1]))
    ref_next = dec._session.run(dec._output_names, dec.feed([[5]], ref_short[1:]))
    np.testing.assert_allclose(nxt[0][0], ref_next[0][0], atol=1e-4)


@pytest.mark.parametrize("beams", [1, 3])
def test_generate_many_gives_the_texts_of_one_at_a_time(tmp_path, tokenizer_file, beams):
    from libs.model.export import export_decoder

    model = _holder(BPETokenizer.from_file(tokenizer_file).vocab_size, 4)
    dec = ReportDecoder(export_decoder(model, tmp_path / "d.onnx", False), tokenizer_file, max_new_tokens=14,
                        num_beams=beams, no_repeat_ngram_size=2)
    alone = [dec.generate(p).token_ids for p in PROMPTS]
    together = dec.generate_many(PROMPTS)
    assert [g.token_ids for g in together] == alone
    assert len({g.ms for g in together}) == 1  # every study waited for the whole batch
    assert dec.generate_many([]) == []


def test_generate_many_with_image_tokens(tmp_path, tokenizer_file):
    from libs.model.export import export_decoder

    model = _holder(BPETokenizer.from_file(tokenizer_file).vocab_size, 5)
    dec = ReportDecoder(export_decoder(model, tmp_path / "d.onnx", True), tokenizer_file, max_new_tokens=10,
                        num_beams=2)
    prefixes = np.random.default_rng(1).normal(size=(len(PROMPTS), 3, 32)).astype(np.float32)
    together = [g.token_ids for g in dec.generate_many(PROMPTS, prefixes)]
    assert together == [dec.generate(p, prefixes[i:i + 1]).token_ids for i, p in enumerate(PROMPTS)]


def test_generate_many_without_a_mask_input_decodes_one_by_one(tmp_path, tokenizer_file, monkeypatch):
    """Bundles exported before attention_mask existed keep working, a study at a time."""
    from libs.model.export import export_decoder

    model = _holder(BPETokenizer.from_file(tokenizer_file).vocab_size, 6)
    dec = ReportDecoder(export_decoder(model, tmp_path / "d.onnx", False, with_mask=False), tokenizer_file,
                        max_new_tokens=8)
    assert not dec.has_mask
    calls = []
    real = dec.generate
    monkeypatch.setattr(dec, "generate", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    out = dec.generate_many(PROMPTS[:3])
    assert calls == PROMPTS[:3] and len(out) == 3


def test_top_matches_a_full_stable_sort():
    from libs.bundle.decoder import _top

    rng = np.random.default_rng(0)
    for shape in ((4, 50), (1, 7), (3, 3)):
        scores = np.round(rng.normal(size=shape), 1)  # rounded: ties happen
        scores[0, 0] = -np.inf
        for n in (1, 4, 8, 100):
            want = np.argsort(-scores, axis=None, kind="stable")[:n]
            assert _top(scores, n).tolist() == want.tolist()
