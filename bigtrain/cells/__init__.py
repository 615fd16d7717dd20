"""Cells: what to run. Presets and flags become a `SweepSpec` (spec), with each measuring
protocol's settings (settings); the declared axes (axes) expand it into the `Cell`s of a matrix,
with skip reasons (matrix). Plain data, read by both sides of the wall: imports neither torch nor
pandas."""
