"""moesim simulator: scenario, engine, network, collectives, compute, MoE pipeline, CLI."""
