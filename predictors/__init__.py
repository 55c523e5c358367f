"""moesim: predictors package."""
