"""Outputs: summary, iteration table, timeline and figures, computed from a run's records only."""
