"""`bigbench ab`'s plan as pure functions: the seeded order of a round, the cores, the budget rule,
and the side flags. Exact values; no process runs."""

from __future__ import annotations

import pytest

from bigtrain.ab.plan import (
    DUET,
    INTERLEAVE,
    next_round_fits,
    round_order,
    side_cores,
)
from bigtrain.ab.sides import BASELINE, CANDIDATE, parse_env_pairs
from bigtrain.common.errors import BadInput

CELLS = [f"cell{i}" for i in range(6)]


def test_interleave_round_runs_each_cell_once_per_side_back_to_back() -> None:
    slots = round_order(CELLS, 0, seed=3, mode=INTERLEAVE)
    assert [s.position for s in slots] == list(range(12))
    assert sorted((s.cell_id, s.side) for s in slots) == sorted(
        (c, side) for c in CELLS for side in (BASELINE, CANDIDATE))
    for first, second in zip(slots[::2], slots[1::2]):
        assert first.cell_id == second.cell_id and {first.side, second.side} == {BASELINE, CANDIDATE}


def test_order_is_reproducible_from_the_seed_and_differs_between_rounds_and_seeds() -> None:
    def order(round_index: int, seed: int) -> list[tuple[str, str | None]]:
        return [(s.cell_id, s.side) for s in round_order(CELLS, round_index, seed, INTERLEAVE)]

    assert order(0, 11) == order(0, 11)
    assert order(0, 11) != order(1, 11)  # each round draws again
    assert order(0, 11) != order(0, 12)
    # Over rounds, both sides go first sometimes and the cells move: the order is random.
    firsts = {round_order(CELLS, r, 11, INTERLEAVE)[0].side for r in range(20)}
    assert firsts == {BASELINE, CANDIDATE}
    assert len({tuple(order(r, 11)) for r in range(20)}) == 20


def test_duet_round_runs_both_sides_of_each_cell_together() -> None:
    slots = round_order(CELLS, 2, seed=5, mode=DUET)
    assert sorted(s.cell_id for s in slots) == sorted(CELLS)
    assert {s.side for s in slots} == {None}


def test_cores_interleave_share_one_core_duet_swaps_every_round() -> None:
    assert side_cores(INTERLEAVE, 0, [0, 1, 2]) == {BASELINE: 2, CANDIDATE: 2}
    assert side_cores(INTERLEAVE, 0, [4]) == {BASELINE: 4, CANDIDATE: 4}
    assert side_cores(DUET, 0, [0, 1]) == {BASELINE: 0, CANDIDATE: 1}
    assert side_cores(DUET, 1, [0, 1]) == {BASELINE: 1, CANDIDATE: 0}
    assert side_cores(DUET, 2, [0, 1]) == {BASELINE: 0, CANDIDATE: 1}


def test_duet_on_one_core_is_refused_naming_the_alternative() -> None:
    with pytest.raises(BadInput, match="at least 2 usable cores.*--mode interleave"):
        side_cores(DUET, 0, [3])


def test_next_round_must_fit_the_budget_as_long_as_the_longest_round() -> None:
    assert next_round_fits(0.0, [], 1.0)  # the first round always runs
    assert next_round_fits(100.0, [], 1.0)
    assert next_round_fits(20.0, [10.0, 20.0], 40.0)
    assert not next_round_fits(20.0, [10.0, 20.0], 39.9)
    assert not next_round_fits(30.0, [15.0, 5.0], 44.0)


def test_env_pairs_parse_and_bad_ones_name_the_flag_and_value() -> None:
    assert parse_env_pairs(["A=1", "B_2=x=y", "EMPTY="], "--candidate-env") == {
        "A": "1", "B_2": "x=y", "EMPTY": ""}
    for bad in ("NOEQUALS", "=v", "1A=v", "A B=v"):
        with pytest.raises(BadInput, match=f"--baseline-env: '{bad}' is not NAME=VALUE"):
            parse_env_pairs([bad], "--baseline-env")


@pytest.mark.parametrize("module", ["bigtrain.ab.driver", "bigtrain.ab.worker",
                                    "bigtrain.ab.side_worker", "bigtrain.ab.gate"])
def test_ab_modules_are_on_the_measuring_side_of_the_wall(module: str) -> None:
    from test_architecture import _loaded_after_import

    assert _loaded_after_import(module, ["pandas", "seaborn", "matplotlib"]) == []


def test_the_ab_command_module_loads_no_torch() -> None:
    from test_architecture import _loaded_after_import

    assert _loaded_after_import("bigtrain.commands.ab", ["torch", "pynvml"]) == []


def test_a_round_gives_each_framework_of_a_side_its_own_worker(tmp_path) -> None:
    import dataclasses
    import sys

    from bigtrain.ab.driver import _Round
    from bigtrain.ab.sides import Side
    from bigtrain.cells.matrix import Cell
    from bigtrain.run.worker import FRAMEWORK_ENV

    torch_cell = Cell(cell_id="a", model="mlp:seed", optimizer="sgd", impl="foreach",
                      batch_norm="off", precision="fp32", device="cpu", batch_size=8,
                      compile="off")
    jax_cell = dataclasses.replace(torch_cell, cell_id="b", framework="jax")
    sides = {name: Side(name=name, python=sys.executable) for name in (BASELINE, CANDIDATE)}
    current = _Round(sides, {BASELINE: 0, CANDIDATE: 1}, tmp_path, index=0)
    torch_worker = current.worker(BASELINE, torch_cell)
    jax_worker = current.worker(BASELINE, jax_cell)
    assert torch_worker is not jax_worker                      # two processes, never one
    assert current.worker(BASELINE, dataclasses.replace(torch_cell, cell_id="c")) is torch_worker
    assert current.worker(CANDIDATE, torch_cell) is not torch_worker
    assert (torch_worker.framework, jax_worker.framework) == ("torch", "jax")
    assert "-jax-" in jax_worker.log_path.name and "-jax-" not in torch_worker.log_path.name
    assert FRAMEWORK_ENV == "BIGTRAIN_WORKER_FRAMEWORK"
