"""Scenario loading, --set overrides and one-line errors naming the field."""

import pytest

from simulator.errors import ScenarioError
from simulator.scenario.schema import apply_override, load_scenario, validate_scenario


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_fill_missing_sections(tmp_path):
    scenario = load_scenario(write(tmp_path, "name: x\n"))
    assert scenario.workload.phase == "prefill"
    assert scenario.predictor.kind == "none"
    assert scenario.balancer.kind == "static"


def test_typo_in_key_names_field_and_allowed_keys(tmp_path):
    with pytest.raises(ScenarioError) as error:
        load_scenario(write(tmp_path, "workload: {batchh: 2}\n"))
    message = str(error.value)
    assert "s.yaml" in message and "workload.batchh: unknown key" in message
    assert "batch" in message and "seq_len" in message


def test_negative_value_names_field_and_bound(tmp_path):
    with pytest.raises(ScenarioError, match=r"workload\.batch: .*greater than or equal to 1.*-3"):
        load_scenario(write(tmp_path, "workload: {batch: -3}\n"))


def test_malformed_yaml_names_line(tmp_path):
    with pytest.raises(ScenarioError, match=r"malformed YAML at line 2"):
        load_scenario(write(tmp_path, "name: x\nworkload: {batch: 1]\n"))


def test_set_overrides_nested_value(tmp_path):
    scenario = load_scenario(write(tmp_path, "name: x\n"), ["workload.batch=4", "topology.gpus=8"])
    assert scenario.workload.batch == 4
    assert scenario.topology["gpus"] == 8


def test_set_unknown_key_is_an_error():
    with pytest.raises(ScenarioError, match=r"--set: unknown key 'workload.batchsize'"):
        apply_override({}, "workload.batchsize=3")
    with pytest.raises(ScenarioError, match=r"--set: expected key.path=value"):
        apply_override({}, "workload.batch")


def test_set_on_open_section_is_accepted():
    raw = {}
    apply_override(raw, "balancer.placement={0: 1}")
    assert validate_scenario(raw).balancer.model_dump()["placement"] == {0: 1}


def test_phase_literal_lists_allowed_values():
    with pytest.raises(ScenarioError, match=r"workload\.phase: .*'prefill' or 'decode'"):
        validate_scenario({"workload": {"phase": "decoding"}})
