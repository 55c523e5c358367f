"""Small scenarios shared by the simulator tests."""

import pytest

from simulator.scenario.schema import validate_scenario

TINY_MODEL = {
    "base": "mixtral-8x7b", "name": "tiny-moe", "layers": 2, "hidden": 512, "ffn": 1024,
    "experts": 8, "top_k": 2, "heads": 8, "kv_heads": 8, "head_dim": 64, "vocab": 1000,
}


def scenario(**sections):
    """A validated scenario: the default's shape with the given sections replaced or merged."""
    raw = {
        "name": "test",
        "model": dict(TINY_MODEL),
        "topology": {"builder": "nvlink_mesh", "gpus": 4, "device": "a100-sxm4-80gb"},
        "workload": {"batch": 1, "seq_len": 256, "iterations": 3,
                     "trace": {"synthetic": {"skewness": 1.4}}},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict) and key != "topology":
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return validate_scenario(raw)


@pytest.fixture
def make_scenario():
    return scenario


@pytest.fixture
def tiny_model():
    return dict(TINY_MODEL)


@pytest.fixture
def moesim(capsys):
    """Run `moesim ARGS...` through the real CLI entry point; returns (exit code, stdout, stderr)."""
    from simulator import cli

    def run(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
