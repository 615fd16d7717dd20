"""The `ray` executor on a real Ray cluster of processes on this machine (a head and a second
node; Ray gives them this machine's own address, never the loopback one): a sweep runs through
it and names host and node in every record and every node in the manifest; kill -9 of the driver
and `--resume` work as with `local`; a cell over its timeout and a dying worker are records; a
node killed mid-cell (its raylet) gives a `crashed` record naming the node, the rest completes,
and `--retry-failed` reruns it. Without Ray the module is skipped (tests/test_ray_extra.py covers
that case)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from bigtrain.results.store import CELLS_NAME, MANIFEST_NAME, latest_records, load_run
from conftest import REPO, TESTS_DIR, write_preset

#: Ray's own start-up (processes, then workers that import torch) on a loaded 2-core box.
START_TIMEOUT_S = 120
#: A whole sweep subprocess; generous, since it is no assertion about timing.
SWEEP_TIMEOUT_S = 180
#: The cell limit of the timeout test: long enough for a real cell on a loaded box, short enough
#: that the hanging cell does not stretch the suite.
HANG_LIMIT_S = 30


# -- a real cluster ----------------------------------------------------------------------------
ray = pytest.importorskip("ray", reason="Ray is not installed (the `ray` extra: "
                                        "pip install 'bigtrain[ray]')")


@dataclass
class LocalCluster:
    """A Ray cluster of processes on this machine, started by the fixture."""

    cluster: Any
    second: Any  # the second node (its own custom resource), kept alive for every test
    env: dict[str, str]

    @property
    def address(self) -> str:
        return self.cluster.address

    def node_ids(self) -> dict[str, bool]:
        """Every node's id and whether it is alive (from the GCS, without a driver here)."""
        return {n["NodeID"]: bool(n["Alive"]) for n in self.cluster.global_state.node_table()}


def _raylet(node: Any) -> psutil.Process:
    from ray._private import ray_constants

    (info,) = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET]
    return psutil.Process(info.process.pid)


def _our_processes() -> set[psutil.Process]:
    return set(psutil.Process().children(recursive=True))


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalCluster]:
    """A head (1 CPU) and a second node (1 CPU and a custom resource) on this machine, with node
    death noticed within seconds; torn down after the module, leaving no process behind."""
    from ray.cluster_utils import Cluster

    before = _our_processes()
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are long
    # The cluster's workers import this checkout's bigtrain, and the test-only fault family.
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS_DIR),
                                          os.environ.get("PYTHONPATH", "")]),
           "BIGTRAIN_PLUGINS": "fault_workloads", "RAY_AUTH_MODE": "disabled",
           # Ray's test cluster writes its address file under $RAY_TMPDIR/ray (default /tmp/ray)
           # whatever temp_dir the head is given, and does not create that folder: point it into
           # the cluster's own folder, so a machine where no Ray ever ran passes too.
           "RAY_TMPDIR": temp_dir}
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "temp_dir": temp_dir,
            "include_dashboard": False,
            "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                               "health_check_timeout_ms": 1000,
                               "health_check_failure_threshold": 3},
        })
        try:
            second = cluster.add_node(num_cpus=1,
                                      resources={"second_node": 1})
            cluster.wait_for_nodes(timeout=START_TIMEOUT_S)
            yield LocalCluster(cluster=cluster, second=second, env=env)
        finally:
            started = _our_processes() - before
            cluster.shutdown()
            _, alive = psutil.wait_procs(list(started), timeout=20)
            for process in alive:  # clean up, then fail: an orphan is a defect
                process.kill()
            assert not alive, f"Ray processes left after the cluster stopped: {alive}"


def _sweep_args(cluster: LocalCluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "bigtrain", "sweep", "--executor", "ray", "--ray-address",
            cluster.address, "--no-report", *args]


def _sweep(cluster: LocalCluster, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_sweep_args(cluster, *args), cwd=cwd, env={**os.environ, **cluster.env},
                          capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S)


def _preset(folder: Path, optimizers: list[str], duration_s: float) -> Path:
    path = write_preset(folder, ["mlp:seed"], optimizers, timeout=120)
    path.write_text(path.read_text().replace("duration_s = 0.05", f"duration_s = {duration_s}"))
    return path


def _cell_runners_under(process: psutil.Process) -> list[psutil.Process]:
    """The processes under `process` running a cell (Ray titles an actor's process by its call)."""
    found = []
    for child in process.children(recursive=True):
        try:
            if "CellRunner.run" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def _wait_for(condition, timeout_s: float, what: str) -> Any:  # noqa: ANN001
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up after {timeout_s:g} s waiting for {what}")


def test_kill_9_of_the_driver_loses_nothing_recorded_and_resume_finishes(
        ray_cluster: LocalCluster, tmp_path: Path) -> None:
    preset = _preset(tmp_path, ["sgd", "adam", "rmsprop"], duration_s=1.0)
    run_dir = tmp_path / "results" / "killed"
    driver = subprocess.Popen(_sweep_args(ray_cluster, "--preset", str(preset), "--run-id",
                                          "killed"),
                              cwd=tmp_path, env={**os.environ, **ray_cluster.env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cells = run_dir / CELLS_NAME
        # The two first cells start together, one on each node (a CPU cell takes a whole
        # node); the third is running when the driver dies.
        _wait_for(lambda: cells.exists() and cells.read_text().count("\n") >= 2,
                  SWEEP_TIMEOUT_S, "the first two records")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    before = [json.loads(line) for line in (run_dir / CELLS_NAME).read_text().splitlines()]
    assert json.loads((run_dir / MANIFEST_NAME).read_text())["state"] == "running"
    # Ray kills a dead driver's actors: no cell keeps running for nobody.
    raylets = [_raylet(ray_cluster.cluster.head_node), _raylet(ray_cluster.second)]
    _wait_for(lambda: not any(_cell_runners_under(r) for r in raylets), 60,
              "the dead driver's cells to stop")

    resumed = _sweep(ray_cluster, tmp_path, "--resume", "killed")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run = load_run(run_dir)
    assert run.manifest.state == "complete"
    lines = [json.loads(line) for line in (run_dir / CELLS_NAME).read_text().splitlines()]
    assert lines[:len(before)] == before  # what was recorded stays, untouched
    assert sorted(r["optimizer"] for r in lines) == ["adam", "rmsprop", "sgd"]  # each cell once
    assert all(r.status == "ok" for r in run.records)

    # Every record names its host and node; the manifest holds every node's fingerprint.
    nodes = ray_cluster.node_ids()
    assert {r["node_id"] for r in before[:2]} == set(nodes)  # one on each node
    assert all(r.host == socket.gethostname() and r.node_id in nodes for r in run.records)
    assert run.manifest.executor == "ray"
    assert {n["node_id"] for n in run.manifest.nodes} == set(nodes)
    assert all(n["environment"]["torch_version"] and n["resources"]["CPU"] == 1
               for n in run.manifest.nodes)
    assert len({r.worker_pid for r in run.records}) == 3  # a fresh process per cell


def test_ctrl_c_stops_the_cells_on_the_cluster_and_marks_the_run_interrupted(
        ray_cluster: LocalCluster, tmp_path: Path) -> None:
    preset = _preset(tmp_path, ["sgd"], duration_s=30.0)
    driver = subprocess.Popen(_sweep_args(ray_cluster, "--preset", str(preset), "--run-id",
                                          "stopped"),
                              cwd=tmp_path, env={**os.environ, **ray_cluster.env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    raylets = [_raylet(ray_cluster.cluster.head_node), _raylet(ray_cluster.second)]
    try:
        _wait_for(lambda: any(_cell_runners_under(r) for r in raylets), SWEEP_TIMEOUT_S,
                  "the cell to start")
        driver.send_signal(signal.SIGINT)  # Ray's own handlers must not take over the sweep's
        output, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, output
    assert "Traceback" not in output
    assert load_run(tmp_path / "results" / "stopped").manifest.state == "interrupted"
    _wait_for(lambda: not any(_cell_runners_under(r) for r in raylets), 60,
              "the interrupted cell to stop")


def test_a_cell_over_its_timeout_and_a_dying_worker_are_records(
        ray_cluster: LocalCluster, tmp_path: Path, faults: None) -> None:
    from bigtrain.run.sweep import SweepOptions, run_sweep
    from bigtrain.cells.spec import spec_from_preset

    # The limit must cover a worker's torch import and build on a loaded 2-core box (8 s did
    # not, at load 15: the segv cell timed out before it could crash); the hang cell pays it.
    preset = write_preset(tmp_path, ["fault:hang", "fault:segv", "mlp:seed"],
                          timeout=HANG_LIMIT_S)
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path, run_id="faults", executor="ray",
                                     executor_options={"address": ray_cluster.address}))
    assert outcome.exit_code == 1
    by_model = {r.model: r for r in load_run(tmp_path / "faults").records}
    hung, died = by_model["fault:hang"], by_model["fault:segv"]
    assert hung.status == "timeout" and f"cell exceeded the {HANG_LIMIT_S} s limit" in hung.reason
    assert hung.node_id in ray_cluster.node_ids()
    assert died.status == "crashed" and died.node_id in ray_cluster.node_ids()
    assert "the worker process on node " in died.reason and "died mid-cell" in died.reason
    assert by_model["mlp:seed"].status == "ok"
    import ray

    assert not ray.is_initialized()  # the executor left the cluster it joined


def test_a_node_lost_mid_cell_is_crashed_naming_it_and_retry_failed_reruns_it(
        ray_cluster: LocalCluster, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in ray_cluster.env.items():
            patch.setenv(key, value)
        victim = ray_cluster.cluster.add_node(num_cpus=1)
    ray_cluster.cluster.wait_for_nodes(timeout=START_TIMEOUT_S)
    victim_id = victim.node_id
    raylet = _raylet(victim)
    # Three cells, three one-CPU nodes: each node, the victim included, gets one at once.
    preset = _preset(tmp_path, ["sgd", "adam", "rmsprop"], duration_s=1.5)
    driver = subprocess.Popen(_sweep_args(ray_cluster, "--preset", str(preset), "--run-id",
                                          "lost"),
                              cwd=tmp_path, env={**os.environ, **ray_cluster.env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        runners = _wait_for(lambda: _cell_runners_under(raylet), SWEEP_TIMEOUT_S,
                            "a cell running on the victim node")
        raylet.kill()  # the node is lost mid-cell
        output, _ = driver.communicate(timeout=SWEEP_TIMEOUT_S)
    finally:
        if driver.poll() is None:
            driver.kill()
        ray_cluster.cluster.remove_node(victim, allow_graceful=False)
    _, alive = psutil.wait_procs(runners, timeout=30)
    assert not alive, "the lost node's cell process outlived its node"

    assert driver.returncode == 1, output  # a failed cell, the sweep otherwise complete
    run = load_run(tmp_path / "results" / "lost")
    assert run.manifest.state == "complete"
    (crashed,) = [r for r in run.records if r.status != "ok"]
    assert crashed.status == "crashed"
    assert crashed.node_id == victim_id
    assert f"node {victim_id[:12]} ({victim.node_ip_address}, " in crashed.reason
    assert "was lost mid-cell" in crashed.reason
    assert len([r for r in run.records if r.status == "ok"]) == 2

    retried = _sweep(ray_cluster, tmp_path, "--resume", "lost", "--retry-failed")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    latest = latest_records(load_run(tmp_path / "results" / "lost").records)
    assert len(latest) == 3 and all(r.status == "ok" for r in latest)
    rerun = next(r for r in latest if r.cell_id == crashed.cell_id)
    assert rerun.node_id != victim_id


def test_a_profiled_sweep_through_ray_leaves_each_cells_profile_in_the_run_folder(
        ray_cluster: LocalCluster, tmp_path: Path) -> None:
    """Issue 24: `--profile` through the Ray executor (the workers write into the run folder,
    which is on this machine's filesystem, as a shared folder would be on a real cluster)."""
    from bigtrain.profiles.load import load_profiles

    preset = _preset(tmp_path, ["sgd", "adam"], duration_s=0.05)
    result = _sweep(ray_cluster, tmp_path, "--preset", str(preset), "--run-id", "profiled",
                    "--profile", "--profile-steps", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / "results" / "profiled"
    run = load_run(run_dir)
    assert [r.profile_status for r in run.records] == ["ok", "ok"], [
        r.profile_reason for r in run.records]
    found = load_profiles(run_dir)
    assert set(found.profiles) == {r.cell_id for r in run.records} and not found.invalid
