"""A run worker killed with SIGKILL gives its pool slot back (``run_monitoring`` in ``dagster.yaml``).

On an instance built from the project's ``dagster.yaml`` (only the monitoring poll made faster), run A is
launched as the UI launches it: the DefaultRunLauncher asks a code server subprocess to start a run worker.
Once A's step holds the one slot of the training pool, the worker is killed with SIGKILL and run B, which
wants the same pool, is launched; a real ``dagster-daemon run`` watches the instance. The code server marks
A failed, the monitoring daemon frees the slot A still holds, and B runs. Without ``run_monitoring`` B waits
forever (here: until the bounded wait fails)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import PythonFileTarget
from process_groups import stop_process_group

from assets.policies import TRAINING_POOL
from radvlm_pipeline.layout import PROJECT_ROOT

LOCATION = "dead_run_slots"
# The holding step waits for the test to let go (or two minutes at most): under the multiprocess executor
# the step runs in a process of its own, which outlives the killed run worker.
LOCATION_CODE = f'''
import time
from pathlib import Path

from dagster import Definitions, asset, define_asset_job

RELEASE = Path(__file__).with_name("release")


@asset(pool="{TRAINING_POOL}")
def holds_the_slot():
    deadline = time.monotonic() + 120
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


@asset(pool="{TRAINING_POOL}")
def wants_the_slot():
    return 1


defs = Definitions(
    assets=[holds_the_slot, wants_the_slot],
    jobs=[define_asset_job("hold", [holds_the_slot]), define_asset_job("want", [wants_the_slot])],
)
'''


def wait_for(what: str, condition: Callable[[], object], timeout_s: float, explain: Callable[[], str]):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s\n{explain()}")
        time.sleep(0.2)
    return found


def messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [entry.message for entry in instance.all_logs(run_id) if entry.message]


def step_started(instance: DagsterInstance, run_id: str) -> bool:
    return bool(instance.all_logs(run_id, of_type=DagsterEventType.STEP_START))


def run_worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The run worker's process, from the event it writes first ("Started process for run (pid: N).")."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        pid = entry.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value)
    return None


def slot_holders(instance: DagsterInstance) -> list[str]:
    return [
        slot.run_id for slot in instance.event_log_storage.get_concurrency_info(TRAINING_POOL).claimed_slots
    ]


@pytest.fixture
def home(tmp_path) -> Path:
    """A Dagster home with the project's instance settings, the monitoring daemon polling every second."""
    settings = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    settings.setdefault("run_monitoring", {})["poll_interval_seconds"] = 1
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    # Its sqlite files, made before three processes (test, code server, daemon) race to make them.
    DagsterInstance.from_config(str(home)).dispose()
    return home


@pytest.fixture
def location(tmp_path) -> Path:
    path = tmp_path / "location" / "definitions.py"
    path.parent.mkdir()
    path.write_text(LOCATION_CODE)
    return path


@pytest.fixture
def daemon(home, location, monkeypatch) -> Iterator[Callable[[], str]]:
    """`dagster-daemon run` on the test's home, as `dagster dev` runs it; yields what it is doing, to explain
    a failed wait."""
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the code server and run workers inherit it too
    log_path = home / "daemon.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-f", str(location)],
            cwd=location.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def status() -> str:
            exited = process.poll()
            tail = "".join(log_path.read_text().splitlines(keepends=True)[-10:])
            return f"daemon {'running' if exited is None else f'exited ({exited})'}, its log ends:\n{tail}"

        try:
            yield status
        finally:
            stop_process_group(process)


@pytest.fixture
def launch(home, location, daemon) -> Iterator[tuple[DagsterInstance, Callable[[str], str]]]:
    """The instance and a function launching a job of the test's code location through its run launcher."""
    target = PythonFileTarget(
        python_file=str(location),
        attribute=None,
        working_directory=str(location.parent),
        location_name=LOCATION,
    )
    with DagsterInstance.from_config(str(home)) as instance:
        with WorkspaceProcessContext(instance, target) as context:
            workspace = context.create_request_context()
            code_location = workspace.get_code_location(LOCATION)
            repository = code_location.get_repository("__repository__")

            def launch_job(job_name: str) -> str:
                job = repository.get_full_job(job_name)
                plan = code_location.get_execution_plan(job, {}, None, None, instance)
                run = instance.create_run(
                    job_name=job_name,
                    run_id=None,
                    run_config={},
                    status=None,
                    tags={},
                    root_run_id=None,
                    parent_run_id=None,
                    step_keys_to_execute=None,
                    execution_plan_snapshot=plan.execution_plan_snapshot,
                    job_snapshot=job.job_snapshot,
                    parent_job_snapshot=job.parent_job_snapshot,
                    asset_selection=None,
                    asset_check_selection=None,
                    resolved_op_selection=None,
                    op_selection=None,
                    remote_job_origin=job.get_remote_origin(),
                    job_code_origin=job.get_python_origin(),
                    asset_graph=workspace.asset_graph,
                )
                instance.submit_run(run.run_id, workspace)  # DefaultRunCoordinator: launched at once
                return run.run_id

            try:
                yield instance, launch_job
            finally:
                (location.parent / "release").touch()  # lets the orphaned holding step end
                for run in instance.get_runs():  # the code server waits for its run workers to exit
                    pid = run_worker_pid(instance, run.run_id)
                    if not run.is_finished and pid:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass


@pytest.mark.slow
def test_a_killed_run_worker_frees_its_pool_slot_for_the_next_run(launch, daemon):
    instance, launch_job = launch

    def state() -> str:
        runs = "\n".join(f"{r.job_name} {r.run_id}: {r.status.value}" for r in instance.get_runs())
        return f"runs:\n{runs}\nslot holders: {slot_holders(instance)}\n{daemon()}"

    run_a = launch_job("hold")
    wait_for("run A's step holds the pool slot", lambda: step_started(instance, run_a), 60, state)
    assert slot_holders(instance) == [run_a]

    os.kill(wait_for("run A's worker pid", lambda: run_worker_pid(instance, run_a), 5, state), signal.SIGKILL)
    run_b = launch_job("want")

    wait_for("run A marked failed", lambda: instance.get_run_by_id(run_a).is_finished, 15, state)
    assert instance.get_run_by_id(run_a).status == DagsterRunStatus.FAILURE
    assert any("terminated by signal 9 (SIGKILL)" in message for message in messages(instance, run_a))

    wait_for("run B's step started", lambda: step_started(instance, run_b), 60, state)
    assert run_a not in slot_holders(instance)
    wait_for("run B finished", lambda: instance.get_run_by_id(run_b).is_finished, 60, state)
    assert instance.get_run_by_id(run_b).status == DagsterRunStatus.SUCCESS, messages(instance, run_b)
    assert slot_holders(instance) == []
