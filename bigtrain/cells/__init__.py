"""Cells: what to run. Presets and flags become a `SweepSpec` (spec), declared axes (axes) expand
into the `Cell`s of a matrix with skip reasons (matrix). Plain data, read by both sides of the
wall: imports neither torch nor pandas."""
