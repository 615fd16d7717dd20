"""Measuring a cell: the step loop and timing, memory, hardware telemetry (NVML), FLOPs, MFU."""
