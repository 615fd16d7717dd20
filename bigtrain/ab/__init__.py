"""`bigbench ab`: a paired A/B run of two Python environments on one machine, round by round.

Rooms: `sides` (an interpreter plus environment variables, from the flags), `plan` (the seeded
order of a round, the cores, the budget rule), `protocol` (the versioned JSON-lines messages
between the driver and a side's worker), `worker` (the worker, run by the side's own interpreter as
`PY -m bigtrain ab-worker`), `side_worker` (the driver's handle on one such process), `gate` (the
paired statistics of `bigtrain.compare.paired`, seen from here), `driver` (rounds, stop rules, the
two run folders).

Measuring side of the wall: never imports pandas or seaborn (the gate module imports the compare
package lazily, which imports neither).
"""
