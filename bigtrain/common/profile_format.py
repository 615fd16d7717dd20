"""The files a profiled cell leaves under `results/<run>/profiles/<cell>/`: the contract between
the side that writes them (`bigtrain.measure.profile_artifacts`) and the side that reads them
(`bigtrain.profiles.load`). Names only, so both sides share it without importing each other."""

from __future__ import annotations

SUMMARY_NAME = "summary.json"
OPS_CSV_NAME = "ops.csv"
OPS_PARQUET_NAME = "ops.parquet"
PROFILES_DIR = "profiles"
SUMMARY_SCHEMA = 1

PHASES = ("forward", "backward", "optimizer", "communication", "other")
#: One row per (op, phase) of the ops table, in this order.
OP_COLUMNS = ("op", "phase", "category", "calls_per_step", "self_host_us_per_step",
              "self_device_us_per_step", "flops_per_step", "input_shapes", "share_of_step")
