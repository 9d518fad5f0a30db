"""Trace-driven simulation: network trace readers, the time-driven simulator, baselines, plots."""
