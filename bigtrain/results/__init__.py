"""Results: the records between the two sides. Schema and migrations, the append-only store, run
ids, validation, then the analysing view of a run (frame, Parquet, curves)."""
