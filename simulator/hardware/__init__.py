"""Hardware fitting: nccl-tests logs parsed and fitted, and simulated vs published measurements."""
