"""moesim: workloads package."""
