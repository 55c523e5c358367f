"""docs/scenario-reference.md is what the schema says (regenerate with the command in its header)."""

from pathlib import Path

from simulator.scenario.reference import reference

DOC = Path(__file__).resolve().parents[3] / "docs" / "scenario-reference.md"


def test_scenario_reference_matches_the_schema():
    assert DOC.read_text() == reference(), (
        "regenerate: .venv/bin/python -m simulator.scenario.reference > docs/scenario-reference.md")


def test_every_schema_key_is_listed():
    text = DOC.read_text()
    for key in ("workload.batch", "parallelism.attention", "predictor.kind", "compute.grouped_gemm"):
        assert f"`{key}`" in text
