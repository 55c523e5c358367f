"""Planning: predictors and balancers turned into per-iteration placements, copies and predictor costs before time runs."""
