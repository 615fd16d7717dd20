"""Reading and explaining profiles: what `bigbench profile` left under `results/<run>/profiles/`.

Rooms: `load` (the one reader of the profile artifact contract: summary.json, ops.csv/.parquet,
the record's profile fields), `breakdown` (time by category x phase, the "why" line of a pair of
cells), `diff` (op-level diff of two profiles: what made a cell slower), `roofline` (achieved
FLOP/s and bytes/s against this machine's calibrated ceilings), `hta` (Holistic Trace Analysis on
CUDA traces, optional), `render` (terminal, Markdown, JSON of a diff), `gate` (the op-level diffs
`compare` and `ab` add for regressed cells).

Analysing side of the wall: never imports torch or pynvml; the diff path never loads pandas.
"""
