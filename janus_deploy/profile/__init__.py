"""Latency profiles (per level × segment), payload sizes, linear per-block models and presets."""
