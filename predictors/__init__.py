"""moesim predictors: forecast expert load (Distribution-Only) or each token's expert.

Every predictor speaks scikit-learn (`fit`, `predict`, `score`) and reports the FLOPs and
bytes of one inference (`inference_cost`) for the simulator to charge; see docs/predictors.md.
"""

from predictors.base import (
    DistributionPredictor,
    PredictorCost,
    TokenPredictor,
    distribution_error,
    normalise,
    top_k_accuracy,
)
from predictors.errors import PredictorError
from predictors.evaluation import Evaluation, evaluate, split_iterations
from predictors.registry import (
    FAMILIES,
    PREDICTORS,
    make_predictor,
    predictor_family,
    predictor_interface,
    predictor_size,
)

__all__ = [
    "FAMILIES",
    "PREDICTORS",
    "DistributionPredictor",
    "Evaluation",
    "PredictorCost",
    "PredictorError",
    "TokenPredictor",
    "distribution_error",
    "evaluate",
    "make_predictor",
    "normalise",
    "predictor_family",
    "predictor_interface",
    "predictor_size",
    "split_iterations",
    "top_k_accuracy",
]
