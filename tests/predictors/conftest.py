"""Small traces shared by the predictor tests: a tiny MoE model and its synthetic trace."""

import numpy as np
import pytest

from workloads.models import model_spec
from workloads.synthetic import generate_trace
from workloads.trace import RoutingTrace

TINY_MODEL = {"base": "mixtral-8x7b", "name": "tiny-moe", "layers": 4, "hidden": 256,
              "ffn": 512, "experts": 8, "top_k": 2, "vocab": 500}


@pytest.fixture(scope="session")
def tiny_model():
    return model_spec(TINY_MODEL)


@pytest.fixture(scope="session")
def synthetic_trace(tiny_model):
    """8 iterations x 512 tokens, 4 MoE layers, 8 experts, top-2, with ids and features."""
    return generate_trace(tiny_model, 8, 512, seed=0)


@pytest.fixture
def make_trace():
    return hand_trace


def hand_trace(experts, token_ids=None, features=None, num_experts=None) -> RoutingTrace:
    """A RoutingTrace from nested lists [iterations, layers, tokens, top_k]."""
    experts = np.asarray(experts, dtype=np.int16)
    meta = {"num_experts": int(num_experts or experts.max() + 1)}
    return RoutingTrace(experts=experts,
                        token_ids=None if token_ids is None else np.asarray(token_ids, np.int32),
                        features=None if features is None else np.asarray(features, np.float32),
                        meta=meta)
