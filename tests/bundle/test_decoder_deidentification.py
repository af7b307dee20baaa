"""The reference decoder never writes the IU corpus's de-identification mark ("XXXX")."""

from __future__ import annotations

from libs.bundle.decoder import ReportDecoder
from libs.core.config import REPO_ROOT

BUNDLE = REPO_ROOT / "models" / "reference"


def test_generated_reports_never_contain_the_deidentification_mark() -> None:
    decoder = ReportDecoder(BUNDLE / "decoder.onnx", BUNDLE / "tokenizer.json", max_new_tokens=80)
    assert len(decoder.suppressed) > 0
    assert all("XX" in decoder.tokenizer.id_to_token[i] for i in decoder.suppressed)
    prompts = ["", "age 67; male", "age 8; female; indication: fever, cough", "age 45; indication: chest pain"]
    for prompt in prompts:
        for beams in (1, 4):
            text = decoder.generate(prompt, num_beams=beams).text
            assert text.strip()
            assert "XX" not in text, (prompt, beams, text)
