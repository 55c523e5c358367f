"""The MoE model: kernel costs, kernel tables, memory, token routing and the layer pipelines (inference, training) that run on the engine."""
