"""The engine: a SimPy cluster of GPU streams, the max-min fluid network and collectives built from its flows. Knows nothing of MoE."""
