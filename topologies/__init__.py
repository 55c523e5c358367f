"""moesim: topologies package."""
