"""BundleRunner on the random-weight test bundle: shapes, determinism, batching, boxes, input checks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from libs.bundle.manifest import MANIFEST_FILE
from libs.bundle.runner import BundleRunner
from libs.bundle.testing import build_random_bundle
from libs.core.errors import BundleUnavailable
from libs.domain.labels import CHEXPERT_LABELS
from libs.domain.model_output import ModelOutput

from bundle_helpers import SIZE


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, SIZE, SIZE), dtype=np.float32)


def probs(outputs: list[ModelOutput]) -> np.ndarray:
    return np.array([[p.probability for p in o.predictions] for o in outputs], dtype=np.float64)


def test_predict_shapes_and_ranges(runner: BundleRunner):
    outputs = runner.predict(images(3))
    assert len(outputs) == 3
    for out in outputs:
        assert out.model_name == "random-test-bundle"
        assert out.model_version == "0.0.0-test"
        assert tuple(p.label for p in out.predictions) == CHEXPERT_LABELS
        assert all(0.0 <= p.probability <= 1.0 and p.threshold == 0.5 for p in out.predictions)
        assert out.text is None
        assert out.inference_ms is not None and out.inference_ms > 0


def test_runner_exposes_providers_and_manifest(runner: BundleRunner):
    assert runner.providers == ["CPUExecutionProvider"]
    assert runner.image_size == SIZE
    assert runner.model_version == runner.manifest.version
    assert runner.has_heatmaps and runner.has_embedding


def test_channel_axis_is_optional(runner: BundleRunner):
    x = images(2)
    assert probs(runner.predict(x)).tolist() == probs(runner.predict(x[:, None])).tolist()


def test_deterministic(runner: BundleRunner, tmp_path: Path):
    x = images(2)
    first = runner.predict(x)
    assert [o.predictions for o in first] == [o.predictions for o in runner.predict(x)]
    # Same seed -> same weights -> same numbers; another seed -> another model.
    same = BundleRunner(build_random_bundle(tmp_path / "same", image_size=SIZE))
    other = BundleRunner(build_random_bundle(tmp_path / "other", image_size=SIZE, seed=7))
    np.testing.assert_array_equal(probs(same.predict(x)), probs(first))
    assert not np.allclose(probs(other.predict(x)), probs(first))


def test_outputs_depend_on_the_image(runner: BundleRunner):
    p = probs(runner.predict(images(2)))
    assert np.abs(p[0] - p[1]).max() > 1e-4
    dark, bright = np.zeros((1, SIZE, SIZE), np.float32), np.ones((1, SIZE, SIZE), np.float32)
    assert np.abs(probs(runner.predict(dark)) - probs(runner.predict(bright))).max() > 1e-2


def test_batch_of_one_equals_batch_of_five(runner: BundleRunner):
    x = images(5)
    together = probs(runner.predict(x))
    alone = np.concatenate([probs(runner.predict(x[i : i + 1])) for i in range(5)])
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    for i, out in enumerate(runner.predict(x)):
        assert [p.bounding_box for p in out.predictions] == [
            p.bounding_box for p in runner.predict(x[i : i + 1])[0].predictions
        ]


def test_batches_larger_than_max_batch_size_are_split(random_bundle: Path, tmp_path: Path, runner: BundleRunner):
    small = build_random_bundle(tmp_path / "small", image_size=SIZE)
    data = json.loads((small / MANIFEST_FILE).read_text(encoding="utf-8"))
    data["batching"]["max_batch_size"] = 2
    (small / MANIFEST_FILE).write_text(json.dumps(data), encoding="utf-8")
    x = images(5)
    np.testing.assert_allclose(probs(BundleRunner(small).predict(x)), probs(runner.predict(x)), atol=1e-5, rtol=0)


def test_empty_batch(runner: BundleRunner):
    assert runner.predict(np.zeros((0, SIZE, SIZE), np.float32)) == []


def test_not_assessed_labels_have_no_probability(tmp_path: Path):
    assessed = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax"]
    sub = BundleRunner(build_random_bundle(tmp_path / "sub", image_size=SIZE, assessed_labels=assessed, threshold=0.0))
    (out,) = sub.predict(images(1))
    for p in out.predictions:
        if p.label in assessed:
            assert p.assessed and p.probability is not None and p.threshold == 0.0
        else:
            assert p.probability is None and p.threshold is None and p.bounding_box is None
            assert not p.assessed and not p.positive
    assert {p.label for p in out.positives()} == set(assessed)


def test_assessed_numbers_do_not_depend_on_the_subset(runner: BundleRunner, tmp_path: Path):
    sub = BundleRunner(build_random_bundle(tmp_path / "sub", image_size=SIZE, assessed_labels=["Edema"]))
    x = images(1)
    assert sub.predict(x)[0].prediction("Edema").probability == runner.predict(x)[0].prediction("Edema").probability


def test_boxes_inside_image_and_only_for_positive_labels(runner: BundleRunner):
    n_boxes = 0
    for out in runner.predict(images(4)):
        for p in out.predictions:
            if p.bounding_box is None:
                continue
            n_boxes += 1
            assert p.positive and p.label != "No Finding"
            x0, y0, x1, y1 = p.bounding_box
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE  # pixel edges
    assert n_boxes > 0


def test_boxes_follow_a_bright_patch(tmp_path: Path):
    # threshold 0 makes every label positive, so every label except No Finding gets a box.
    everything = BundleRunner(build_random_bundle(tmp_path / "all", image_size=SIZE, threshold=0.0))
    x = np.zeros((1, SIZE, SIZE), np.float32)
    x[0, 40:56, 8:24] = 1.0  # rows 40..55 (y), columns 8..23 (x): edges [8, 40, 24, 56]
    (out,) = everything.predict(x)
    boxes = [p.bounding_box for p in out.predictions if p.label != "No Finding"]
    assert all(b is not None for b in boxes)
    for x0, y0, x1, y1 in boxes:
        # x is the column, y the row; within one heatmap cell (4 px) of the patch.
        assert abs(x0 - 8) <= 4 and abs(x1 - 24) <= 4 and abs(y0 - 40) <= 4 and abs(y1 - 56) <= 4
    assert out.prediction("No Finding").bounding_box is None


def _with_box_policy(bundle: Path, **policy: float) -> BundleRunner:
    data = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
    if policy:
        data["boxes"] = policy
    else:
        data.pop("boxes", None)
    (bundle / MANIFEST_FILE).write_text(json.dumps(data), encoding="utf-8")
    return BundleRunner(bundle)


def test_runner_honours_the_manifest_box_policy(tmp_path: Path):
    bundle = build_random_bundle(tmp_path / "all", image_size=SIZE, threshold=0.0)
    focal = np.zeros((1, SIZE, SIZE), np.float32)
    focal[0, 40:56, 8:24] = 1.0  # 16x16 of 64x64 px: about 6 % of the input
    diffuse = np.zeros((1, SIZE, SIZE), np.float32)
    diffuse[0, 4:60, 4:60] = 1.0  # most of the image

    def boxes(runner: BundleRunner, x: np.ndarray) -> list:
        (out,) = runner.predict(x)
        return [p.bounding_box for p in out.predictions if p.label != "No Finding"]

    default = _with_box_policy(bundle)  # no section: threshold 0.5, at most a quarter of the input
    assert all(b is not None for b in boxes(default, focal))
    assert all(b is None for b in boxes(default, diffuse))  # positive, but no side or place is claimed
    everything = _with_box_policy(bundle, max_area_fraction=1.0)
    assert all(b is not None for b in boxes(everything, diffuse))
    strict = _with_box_policy(bundle, max_area_fraction=0.02)
    assert all(b is None for b in boxes(strict, focal))


def test_no_heatmaps_no_boxes(tmp_path: Path):
    plain = BundleRunner(
        build_random_bundle(tmp_path / "plain", image_size=SIZE, threshold=0.0, with_heatmaps=False,
                            with_embedding=False)
    )
    (out,) = plain.predict(images(1))
    assert all(p.bounding_box is None for p in out.predictions)
    assert len(out.positives()) == 13
    assert plain.embed(images(1)) is None
    assert plain.predict_and_embed(images(1))[1] is None


def test_embeddings(runner: BundleRunner):
    x = images(3)
    emb = runner.embed(x)
    assert emb.shape == (3, 16) and emb.dtype == np.float32
    outputs, emb2 = runner.predict_and_embed(x)
    np.testing.assert_allclose(emb, emb2, atol=1e-6)
    assert probs(outputs).tolist() == probs(runner.predict(x)).tolist()
    assert not np.allclose(emb[0], emb[1])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((1, SIZE, SIZE), np.float64), "must be float32"),
        (np.zeros((1, SIZE, SIZE), np.uint8), "must be float32"),
        (np.zeros((SIZE, SIZE), np.float32), r"must have shape \[N, 64, 64\]"),
        (np.zeros((1, 32, 32), np.float32), r"got \[1, 1, 32, 32\]"),
        (np.zeros((1, 3, SIZE, SIZE), np.float32), "must have shape"),
        (np.full((1, SIZE, SIZE), np.nan, np.float32), "NaN or infinite"),
        (np.full((1, SIZE, SIZE), 255.0, np.float32), r"scaled to \[0, 1\]"),
        (np.full((1, SIZE, SIZE), -0.1, np.float32), r"scaled to \[0, 1\]"),
        ([[0.0]], "must be a numpy array"),
    ],
)
def test_wrong_input_rejected(runner: BundleRunner, bad, message: str):
    with pytest.raises(ValueError, match=message):
        runner.predict(bad)
    with pytest.raises(ValueError, match=message):
        runner.embed(bad)


def test_unavailable_requested_provider(random_bundle: Path):
    with pytest.raises(BundleUnavailable, match="none of the execution providers"):
        BundleRunner(random_bundle, providers=["CUDAExecutionProvider"])


def test_test_only_bundle_is_logged(random_bundle: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="libs.bundle.runner"):
        BundleRunner(random_bundle)
    assert "TEST FIXTURE" in caplog.text
    assert "encoder on CPUExecutionProvider" in caplog.text


def test_missing_bundle(tmp_path: Path):
    with pytest.raises(BundleUnavailable, match="no model bundle installed at"):
        BundleRunner(tmp_path / "none")


def test_num_beams_override_reaches_the_decoder_and_the_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """CXR_NUM_BEAMS (Settings.num_beams) overrides the manifest's decoding; /readyz's status shows it."""
    from libs.core.config import REPO_ROOT, Settings
    from libs.observability import runtime_status
    from libs.pipeline.context import PipelineContext

    reference = REPO_ROOT / "models" / "reference"
    manifest_beams = BundleRunner(reference).num_beams
    assert manifest_beams == 4
    greedy = BundleRunner(reference, num_beams=1)
    assert greedy.num_beams == 1
    image = np.full((1, greedy.image_size, greedy.image_size), 0.5, np.float32)
    assert greedy.predict(image)[0].text
    with pytest.raises(ValueError, match="num_beams"):
        BundleRunner(reference, num_beams=0)

    monkeypatch.setattr(runtime_status, "LOCAL", {})
    monkeypatch.setenv("CXR_NUM_BEAMS", "2")
    settings = Settings(data_dir=tmp_path, bundle_path=reference, image_size=greedy.image_size, queue_backend="inprocess")
    assert settings.num_beams == 2
    status = PipelineContext.from_settings(settings).runtime_status()
    assert status.num_beams == 2 and status.model_version == greedy.model_version
