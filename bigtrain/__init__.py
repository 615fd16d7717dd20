"""bigtrain: benchmark and profiling suite for deep-learning optimizers and hardware."""

__version__ = "0.1.0"
