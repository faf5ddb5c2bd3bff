"""The project's command-line entry points for partitions (``make materialize``, ``make backfill``,
``make wait-backfill``): the README's ``dagster`` commands, with two things Dagster's CLI does not do.

- A partition key that does not exist is refused up front with the valid keys listed, instead of a
  stack trace from deep inside the run.
- ``dagster job backfill`` returns once the runs are submitted, not when they end (with this project's
  ``DefaultRunCoordinator`` they are already starting; under a ``QueuedRunCoordinator`` they wait for the
  daemon). ``backfill`` waits for them and reports each run's status; ``wait`` does so for a backfill
  launched some other way (the UI, ``dagster job backfill``).

    python -m sensors.cli materialize --select corpus --partition report_generation__mimic_cxr
    python -m sensors.cli backfill --job corpus_rows --partitions classification__chexpert,phrase_grounding__ms_cxr
    python -m sensors.cli wait [BACKFILL_ID]      # the latest backfill by default

Exit status: 0 when every run succeeded, 1 when one did not (or the wait timed out), 2 for a wrong
partition key, asset or job.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from definitions import defs
from radvlm_pipeline.layout import PROJECT_ROOT

BACKFILL_TAG = "dagster/backfill"  # the tag Dagster puts on every run of a backfill
PARTITION_TAG = "dagster/partition"
ENDED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
LAUNCHED = re.compile(r"Launched backfill job `([^`]+)`")


class UsageError(Exception):
    """A wrong name or key: said in one message, with what would have been valid."""


def _listed(keys: Sequence[str]) -> str:
    return "\n".join(f"  {key}" for key in keys)


def asset_partition_keys(selection: str) -> list[str]:
    """The partition keys every selected asset has (``selection``: asset keys separated by commas)."""
    graph = defs.resolve_asset_graph()
    known = sorted(key.to_user_string() for key in graph.materializable_asset_keys)
    names = [name.strip() for name in selection.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise UsageError(f"unknown asset(s) {unknown or [selection]}; the assets are:\n{_listed(known)}")
    keysets = []
    for name in names:
        partitions = graph.get(AssetKey.from_user_string(name)).partitions_def
        if partitions is None:
            raise UsageError(f"{name} is not partitioned: materialize it without --partition")
        keysets.append(partitions.get_partition_keys())
    return [key for key in keysets[0] if all(key in keys for keys in keysets[1:])]


def job_partition_keys(job: str) -> list[str]:
    jobs = sorted(j.name for j in defs.resolve_all_job_defs() if j.partitions_def is not None)
    if job not in jobs:
        raise UsageError(f"unknown partitioned job {job!r}; the partitioned jobs are:\n{_listed(jobs)}")
    return defs.resolve_job_def(job).partitions_def.get_partition_keys()


def check_keys(asked: Sequence[str], valid: Sequence[str], of: str) -> None:
    unknown = [key for key in asked if key not in valid]
    if unknown:
        raise UsageError(
            f"no partition {', '.join(map(repr, unknown))} of {of}; valid keys:\n{_listed(valid)}"
        )


def dagster(*args: str) -> subprocess.CompletedProcess:
    """``dagster ...`` in the project, as the README runs it; its output passed through."""
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", *args], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    sys.stdout.write(completed.stdout)
    sys.stderr.write(completed.stderr)
    return completed


def wait_for_backfill(
    instance: DagsterInstance, backfill_id: str, timeout_s: float, poll_s: float = 1.0
) -> dict[str, DagsterRunStatus]:
    """Block until every run of the backfill has ended; its runs' statuses keyed by partition. Raises
    TimeoutError with the statuses so far after ``timeout_s``."""
    backfill = instance.get_backfill(backfill_id)
    if backfill is None:
        raise UsageError(f"no backfill {backfill_id!r} on this instance ({instance.root_directory})")
    expected = len(backfill.partition_names or [])
    deadline = time.monotonic() + timeout_s
    while True:
        runs = instance.get_run_records(RunsFilter(tags={BACKFILL_TAG: backfill_id}))
        statuses = {
            r.dagster_run.tags.get(PARTITION_TAG, r.dagster_run.run_id): r.dagster_run.status for r in runs
        }
        if len(statuses) >= expected and all(status in ENDED for status in statuses.values()):
            return dict(sorted(statuses.items()))
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"backfill {backfill_id} not done after {timeout_s:.0f} s: {_statuses(statuses)}"
            )
        time.sleep(poll_s)


def latest_backfill_id(instance: DagsterInstance) -> str:
    backfills = instance.get_backfills(limit=1)
    if not backfills:
        raise UsageError(f"no backfill on this instance ({instance.root_directory})")
    return backfills[0].backfill_id


def _statuses(statuses: dict[str, DagsterRunStatus]) -> str:
    return ", ".join(f"{partition}: {status.value}" for partition, status in sorted(statuses.items()))


def report(backfill_id: str, statuses: dict[str, DagsterRunStatus]) -> int:
    print(f"backfill {backfill_id}: {_statuses(statuses)}")
    return 0 if all(status == DagsterRunStatus.SUCCESS for status in statuses.values()) else 1


def materialize(args: argparse.Namespace) -> int:
    check_keys([args.partition], asset_partition_keys(args.select), args.select)
    return dagster(
        "asset", "materialize", "-f", "definitions.py", "--select", args.select, "--partition", args.partition
    ).returncode


def backfill(args: argparse.Namespace) -> int:
    valid = job_partition_keys(args.job)
    asked = [key.strip() for key in (args.partitions or "").split(",") if key.strip()]
    if not args.all and not asked:  # Dagster would take an empty list for every partition
        raise UsageError(
            f"name the partitions of job {args.job}, or ask for all; valid keys:\n{_listed(valid)}"
        )
    check_keys(asked, valid, f"job {args.job}")
    selection = ["--all"] if args.all else ["--partitions", ",".join(asked)]
    tags = ["--tags", json.dumps(json.loads(args.tags))] if args.tags else []
    launched = dagster(
        "job", "backfill", "-f", "definitions.py", "-j", args.job, *selection, "--noprompt", *tags
    )
    found = LAUNCHED.search(launched.stdout + launched.stderr)
    if launched.returncode or not found:
        return launched.returncode or 1
    print("waiting for the backfill's runs to end", flush=True)
    with DagsterInstance.get() as instance:
        return report(found.group(1), wait_for_backfill(instance, found.group(1), args.timeout))


def wait(args: argparse.Namespace) -> int:
    with DagsterInstance.get() as instance:
        backfill_id = args.backfill_id or latest_backfill_id(instance)
        return report(backfill_id, wait_for_backfill(instance, backfill_id, args.timeout))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sensors.cli", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("materialize", help="one partition of some assets, checked first")
    one.add_argument("--select", required=True, help="asset keys, separated by commas")
    one.add_argument("--partition", required=True)
    one.set_defaults(run=materialize)
    many = commands.add_parser("backfill", help="a job's partitions, one run each; waits for them")
    many.add_argument("--job", required=True, help="corpus_rows, training_recipes or model_evaluation")
    chosen = many.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--partitions", help="partition keys, separated by commas")
    chosen.add_argument("--all", action="store_true", help="every partition of the job")
    many.add_argument("--tags", help='run tags as JSON, e.g. {"requested_by": "me"}')
    many.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait (default: a day)")
    many.set_defaults(run=backfill)
    waiting = commands.add_parser("wait", help="wait for a backfill's runs to end and report them")
    waiting.add_argument("backfill_id", nargs="?", help="default: the latest backfill")
    waiting.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait (default: a day)")
    waiting.set_defaults(run=wait)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
