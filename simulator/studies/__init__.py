"""Studies: many runs at once (sweeps, MoE-GPS strategy search) on a local process pool or Dask."""
