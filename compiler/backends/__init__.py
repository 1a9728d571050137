"""Backends of the placed graph: the noisy simulator and the cost estimator."""
