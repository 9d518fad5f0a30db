"""Bandwidth estimators and the scheduler (paper's Algorithm 1 and the janus-deploy mode)."""
