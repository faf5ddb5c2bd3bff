"""Paper scale, end to end (issue 10): the whole asset graph through Dagster on a generated data root.

    .venv/bin/python benchmarks/scale_rehearsal.py --fraction 0.01 [--work DIR] [--json OUT] [--results MD]
    .venv/bin/python benchmarks/scale_rehearsal.py --extrapolate small.json large.json   # to fraction 1.0
    make scale-rehearsal FRACTION=0.01

1. The data root: ``python -m radvlm_pipeline.sample_data --fraction F`` (resumed if ``DIR/data`` holds a
   stopped or finished run of the same fraction; fresh storage and Dagster instance every time).
2. The main pass, through Dagster (``materialize`` into a sqlite instance, the order of ``demo.stages``):
   observation of the dataset folders, the seven sources with their checks, both LLM stages on the
   offline backend, the evaluation sets, every corpus partition, the catalog with its checks, the LLaVA
   export. Training and evaluation assets are left out (GPU time).
3. The training data loader on the ``all`` recipe (tiny LLaVA-OneVision processor): first-batch latency,
   rows/s and images decoded over ``--loader-steps`` micro-batches; the grounding and classification
   metrics over the full evaluation sets (the reference answers scored against themselves).
4. The operating cases, with the LLM stages answered by a local OpenAI-compatible server (the offline
   backend has no cache): a cold run that fills the LLM cache (a second process reads the cache while it
   is written); a re-run with nothing changed (the release sensor and the automation conditions find
   nothing to do; the LLM stages re-materialized: the cache answers every prompt); a later MIMIC-CXR
   release adding ``1000 x F`` studies, caught up by executing what the sensor and the automation
   conditions request, as the daemon would.

Every stage runs in a process of its own, forked from a server that imported the code location once, so
its wall time, CPU time (its process pools included) and peak RSS are its own. Results: one Markdown
table (``--results`` appends it to a file with the machine and date) and a JSON file for
``--extrapolate``, which takes two fractions to 1.0 with a line through both (fixed run overhead kept
fixed, the rest growing with the data).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from radvlm_pipeline.markdown import markdown_table  # noqa: E402

SEED = 0
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
RELEASE_STUDIES_AT_FULL_SIZE = 1_000  # the later MIMIC-CXR release adds this many studies x fraction
HEADER = ["stage", "wall s", "CPU s", "peak RSS GiB", "rows in", "rows out", "quarantined", "notes"]
EXCLUDED_GROUPS = {"training", "evaluation"}  # GPU time: not part of the rehearsal


# --- Stages, each in its own process ------------------------------------------------------------------
def _child(conn, kind: str, spec: dict) -> None:
    """Runs one stage in a fresh fork of the server and sends back its outcome with its own costs."""
    started = time.perf_counter()
    try:
        outcome = STAGES[kind](spec)
    except BaseException as exc:  # reported as a failed stage, not a dead pipe
        outcome = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    own = resource.getrusage(resource.RUSAGE_SELF)
    pools = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome.update(
        wall_s=time.perf_counter() - started,
        cpu_s=own.ru_utime + own.ru_stime + pools.ru_utime + pools.ru_stime,
        peak_rss_gib=max(own.ru_maxrss, pools.ru_maxrss) / 1024**2,  # KiB on Linux
    )
    conn.send(outcome)
    conn.close()


class Stages:
    """Starts each stage in a fork of a server process that imported the code location once (the
    import takes seconds; a fork, milliseconds), with the environment of the data and storage roots."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["__main__", "definitions"])
        self.rows: list[dict] = []

    def run(self, label: str, kind: str, spec: dict | None = None, while_running=None) -> dict:
        receive, send = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_child, args=(send, kind, spec or {}))
        process.start()
        send.close()
        while not receive.poll(0.5):
            if while_running is not None:
                while_running()
            if not process.is_alive() and not receive.poll(0.1):
                raise RuntimeError(f"stage {label} died with exit code {process.exitcode}")
        outcome = receive.recv()
        process.join()
        outcome["stage"] = label
        self.rows.append(outcome)
        status = "FAILED: " + outcome["error"] if "error" in outcome else ""
        print(f"{label}: {outcome['wall_s']:.1f} s, {outcome['peak_rss_gib']:.2f} GiB {status}", flush=True)
        if "error" in outcome:
            raise RuntimeError(f"stage {label} failed: {outcome['error']}")
        return outcome


def generate(spec: dict) -> dict:
    from radvlm_pipeline.sample_data.cli import fraction_studies, generate_scale

    counts = generate_scale(
        Path(spec["data"]),
        SEED,
        fraction_studies(spec["fraction"]),
        files=True,
        later_mimic_studies=spec.get("later_studies", 0),
    )
    files = sum(counts.pop("files_written").values())
    return {
        "rows_out": files,
        "notes": f"fraction {spec['fraction']}: files written {files:,} (tables {counts['seconds']['tables']} s, files "
        f"{counts['seconds']['files']} s); MIMIC-CXR studies {counts['mimic_cxr']['studies']:,}",
        "counts": counts,
    }


def _resources(spec: dict) -> dict:
    from definitions import defs
    from radvlm_pipeline.datasets import DATASETS
    from resources.llm import LLMResource

    resources = dict(defs.resources)
    if spec.get("llm_base_url"):
        resources["llm"] = LLMResource(
            storage=resources["storage"],
            backend="openai",
            base_url=spec["llm_base_url"],
            api_key="rehearsal",
            concurrency=32,
            approved_credentialed_datasets=list(DATASETS),
        )
    return resources


def materialize_stage(spec: dict) -> dict:
    """One Dagster run of ``keys`` (one partition), with the asset checks of those keys."""
    from dagster import AssetKey, DagsterInstance, materialize

    from definitions import defs

    result = materialize(
        [*defs.assets, *defs.asset_checks],
        selection=[AssetKey.from_user_string(key) for key in spec["keys"]],
        partition_key=spec.get("partition"),
        instance=DagsterInstance.get(),
        resources=_resources(spec),
        raise_on_error=False,
        run_config=QUIET,
        tags=spec.get("tags"),
    )
    if not result.success:
        failures = [
            event.step_failure_data.error.to_string()
            for event in result.all_events
            if event.is_step_failure and event.step_failure_data.error
        ]
        return {"error": f"run {result.run_id} failed: {failures[:3]}"}
    return _outcome(result, spec)


def _outcome(result, spec: dict) -> dict:
    """Rows, quarantine, checks and LLM usage of a run, from its materialization metadata."""
    import polars as pl

    from radvlm_pipeline.layout import StorageLayout, storage_root
    from radvlm_pipeline.sources.registry import READERS

    rows_out = quarantined = rows_in = 0
    llm = {"llm_requests_sent": 0, "llm_cache_hits": 0, "llm_offline_answers": 0}
    for event in result.get_asset_materialization_events():
        metadata = {key: value.value for key, value in event.materialization.metadata.items()}
        rows_out += int(metadata.get("dagster/row_count", 0) or 0)
        quarantined += int(metadata.get("quarantined_rows", metadata.get("quarantined", 0)) or 0)
        rows_in += int(metadata.get("reports_in", 0) or 0)
        for key in llm:
            llm[key] += int(metadata.get(key, 0) or 0)
    for key in spec["keys"]:
        if key in READERS:  # a source: every row of every input file
            accounting = StorageLayout(storage_root()).source_table(key, "accounting")
            rows_in += int(pl.read_parquet(accounting)["rows_in"].sum())
    checks = result.get_asset_check_evaluations()
    notes = []
    if checks:
        passed = sum(check.passed for check in checks)
        failed = [check.check_name for check in checks if not check.passed]
        notes.append(
            f"checks {passed}/{len(checks)} passed" + (f" (failed: {', '.join(failed)})" if failed else "")
        )
    if any(llm.values()):
        notes.append(
            f"LLM requests {llm['llm_requests_sent']:,}, cache hits {llm['llm_cache_hits']:,}, "
            f"offline answers {llm['llm_offline_answers']:,}"
        )
    return {
        "rows_in": rows_in or None,
        "rows_out": rows_out,
        "quarantined": quarantined,
        "notes": "; ".join(notes),
        "llm": llm,
    }


def sensor_tick(spec: dict) -> dict:
    """The release sensor's tick: fingerprints every dataset folder against the recorded versions."""
    from dagster import DagsterInstance, SkipReason, build_sensor_context

    from definitions import defs
    from sensors.dataset_releases import CHANGED_DATASETS_TAG, dataset_releases

    context = build_sensor_context(
        instance=DagsterInstance.get(), resources={"storage": defs.resources["storage"]}
    )
    answer = dataset_releases(context)
    if isinstance(answer, SkipReason) or answer is None:
        return {"notes": f"skipped: {getattr(answer, 'skip_message', answer)}", "tags": None}
    tags = dict(answer.tags)
    return {"notes": f"changed: {tags.get(CHANGED_DATASETS_TAG)}", "tags": tags}


def automation_tick(spec: dict) -> dict:
    """What the automation conditions request now, as the automation sensor evaluates them."""
    from dagster import DagsterInstance, evaluate_automation_conditions
    from dagster._serdes import deserialize_value, serialize_value

    from definitions import defs

    cursor = deserialize_value(spec["cursor"]) if spec.get("cursor") else None
    result = evaluate_automation_conditions(defs=defs, instance=DagsterInstance.get(), cursor=cursor)
    requested = {
        key.to_user_string(): sorted(p for p in result.get_requested_partitions(key) if p is not None)
        or [None]
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if result.get_num_requested(key)
    }
    return {
        "requested": requested,
        "cursor": serialize_value(result.cursor),
        "notes": f"requested {sum(len(p) for p in requested.values())} runs"
        if requested
        else "nothing requested",
    }


def loader_stage(spec: dict) -> dict:
    """The training data loader as ``train.py`` builds it: rows of the ``all`` recipe, a seeded plan,
    spawned workers decoding each micro-batch's images and collating them with the model's processor."""
    from radvlm_pipeline.layout import data_root, storage_root
    from radvlm_pipeline.training.data import BatchPlan, CorpusBatches, batch_loader, load_training_rows
    from radvlm_pipeline.training.recipes import recipe_shard_files
    from radvlm_pipeline.training.tiny_model import build_model_directory

    model = build_model_directory(Path(spec["model"]))  # not timed: the base model exists in practice
    started = time.perf_counter()
    rows = load_training_rows(recipe_shard_files(storage_root(), "all"))
    loaded = time.perf_counter()
    batch, steps = spec["micro_batch"], spec["steps"]
    plan = BatchPlan(rows.height, 1, 0, batch, SEED)
    batches = CorpusBatches(rows, plan, 0, steps, str(model), 8192, data_root(), storage_root())
    micro_batches = iter(batch_loader(batches, spec["workers"]))
    next(micro_batches)
    first = time.perf_counter()
    for _ in range(steps - 1):
        next(micro_batches)
    done = time.perf_counter()
    rate = (steps - 1) * batch / (done - first)
    return {
        "rows_in": rows.height,
        "rows_out": steps * batch,
        "notes": f"rows loaded in {loaded - started:.1f} s; first batch {first - started:.1f} s after start; "
        f"{rate:,.0f} rows/s over {steps} micro-batches of {batch} ({steps * batch:,} images decoded, "
        f"{spec['workers']} workers)",
        "first_batch_s": first - started,
        "rows_per_s": rate,
    }


def metrics_stage(spec: dict) -> dict:
    """Grounding and classification metrics over the full evaluation sets, the reference answers standing
    in for a model's (grounding then scores 100; classification a little less: its keyword extraction
    reads the reference phrasing imperfectly)."""
    import polars as pl

    from radvlm_pipeline.evaluation.generation import GROUNDING_TASKS, read_eval_set, reference_answers
    from radvlm_pipeline.evaluation.scoring import SCORERS, ScoringSettings
    from radvlm_pipeline.layout import storage_root

    notes, total = [], 0
    for task in (*GROUNDING_TASKS, "classification"):
        eval_set = read_eval_set(storage_root(), task)
        answers = pl.DataFrame({"id": eval_set["id"], "answers": [[a] for a in reference_answers(eval_set)]})
        started = time.perf_counter()
        metrics, _ = SCORERS[task](eval_set, answers, ScoringSettings())
        headline = metrics[0]
        notes.append(
            f"{task} {eval_set.height:,} rows {time.perf_counter() - started:.2f} s ({headline.name} {_number(headline.value)})"
        )
        total += eval_set.height
    return {"rows_in": total, "rows_out": total, "notes": "; ".join(notes)}


STAGES = {
    "generate": generate,
    "materialize": materialize_stage,
    "sensor": sensor_tick,
    "automation": automation_tick,
    "loader": loader_stage,
    "metrics": metrics_stage,
}


# --- The rehearsal ------------------------------------------------------------------------------------
def main_pass(stages: Stages) -> None:
    """What ``make demo`` does up to the training, each asset (and each partition) in its own run."""
    from assets.policies import RAW_DATASETS
    from definitions import defs
    from demo import stages as demo_stages

    graph = defs.resolve_asset_graph()
    stages.run("observe raw_datasets (7 folders)", "materialize", {"keys": [RAW_DATASETS.to_user_string()]})
    for partitions, keys in demo_stages(graph):
        for key in keys:
            if graph.get(key).group_name in EXCLUDED_GROUPS:
                continue
            name = key.to_user_string()
            for partition in partitions.get_partition_keys() if partitions else [None]:
                label = f"{name} [{partition}]" if partition else name
                stages.run(label, "materialize", {"keys": [name], "partition": partition})


class Automation:
    """The automation sensor's part, played by the rehearsal: one cursor across ticks, so each tick sees
    what changed since the previous one, and every request executed as its own run."""

    def __init__(self, stages: Stages, llm_base_url: str):
        from definitions import defs

        self.stages, self.llm_base_url, self.cursor = stages, llm_base_url, None
        # One tick may request an asset and what it feeds: they run upstream first, as in one run.
        self.order = {
            key.to_user_string(): n for n, key in enumerate(defs.resolve_asset_graph().toposorted_asset_keys)
        }

    def tick(self, label: str) -> dict[str, list[str | None]]:
        answer = self.stages.run(label, "automation", {"cursor": self.cursor})
        self.cursor = answer["cursor"]
        return answer["requested"]

    def catch_up(self, label: str, max_ticks: int = 8) -> list[str]:
        """Execute what the conditions request until they request nothing; returns what ran."""
        ran = []
        for tick in range(max_ticks):
            requested = self.tick(f"{label}: automation tick {tick + 1}")
            if not requested:
                return ran
            for key in sorted(requested, key=self.order.__getitem__):
                for partition in requested[key]:
                    ran.append(f"{key}[{partition}]" if partition else key)
                    self.stages.run(
                        f"{label}: {key}" + (f" [{partition}]" if partition else ""),
                        "materialize",
                        {"keys": [key], "partition": partition, "llm_base_url": self.llm_base_url},
                    )
        raise RuntimeError(f"{label}: still requesting after {max_ticks} ticks")


class CacheReader:
    """A second process's view of the LLM cache while a run writes it: every read must succeed."""

    def __init__(self, path: Path):
        self.path, self.reads, self.failures, self.rows = path, 0, [], 0

    def __call__(self) -> None:
        if not self.path.exists():
            return
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0) as db:
                tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                self.rows = sum(db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables)
            self.reads += 1
        except sqlite3.Error as exc:
            self.failures.append(str(exc))


def fake_llm_server():
    """The test suite's OpenAI-compatible server, in a process of its own (answers at once)."""
    from llm_throughput import SERVER

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, "0", str(ROOT), str(ROOT / "tests")], stdout=subprocess.PIPE, text=True
    )
    port = int(server.stdout.readline())
    return server, f"http://127.0.0.1:{port}/v1"


def operating_cases(stages: Stages, args, storage: Path) -> None:
    from radvlm_pipeline.layout import StorageLayout

    llm_stages = ["reports_without_priors", "conversations"]
    server, base_url = fake_llm_server()
    try:
        automation = Automation(stages, base_url)
        automation.tick("after the main pass: automation tick")  # where the daemon would start from
        reader = CacheReader(StorageLayout(storage).llm_cache)
        for key in llm_stages:
            stages.run(
                f"endpoint, cold cache: {key}",
                "materialize",
                {"keys": [key], "llm_base_url": base_url},
                reader,
            )
        stages.rows[-1]["notes"] += (
            f"; a second process read the cache {reader.reads} times while the two stages wrote it "
            f"({reader.rows:,} rows at the last read), {len(reader.failures)} reads failed"
        )
        automation.catch_up("after the switch to the endpoint")

        stages.run("nothing changed: release sensor tick", "sensor")
        automation.tick("nothing changed: automation tick")
        for key in llm_stages:
            stages.run(
                f"nothing changed: {key} re-run", "materialize", {"keys": [key], "llm_base_url": base_url}
            )
        automation.catch_up("nothing changed, after the LLM re-runs")

        added = max(5, round(RELEASE_STUDIES_AT_FULL_SIZE * args.fraction))
        started = time.perf_counter()
        first = len(stages.rows)
        stages.run(
            "new release: write the later MIMIC-CXR release",
            "generate",
            {"data": str(args.work / "data"), "fraction": args.fraction, "later_studies": added},
        )
        tick = stages.run("new release: release sensor tick", "sensor")
        stages.run(
            "new release: observe raw_datasets",
            "materialize",
            {"keys": ["raw_datasets"], "tags": tick["tags"], "llm_base_url": base_url},
        )
        ran = automation.catch_up("new release")
        requests = sum(row.get("llm", {}).get("llm_requests_sent", 0) for row in stages.rows[first:])
        corpus = sorted(name for name in ran if name.startswith("corpus["))
        stages.rows.append(
            {
                "stage": "new release: the whole catch-up",
                "wall_s": time.perf_counter() - started,
                "notes": f"+{added} MIMIC-CXR studies; {len(ran)} runs: {', '.join(sorted(set(ran) - set(corpus)))}; "
                f"corpus partitions rebuilt: {', '.join(p.removeprefix('corpus[').rstrip(']') for p in corpus)}; "
                f"LLM requests {requests:,}",
            }
        )
    finally:
        server.terminate()
        server.wait()


def rehearse(args) -> list[dict]:
    """Every stage, measured. Call it once per process: the stage server keeps the roots it started
    with (run the script as a command, as the slow test does)."""
    work = args.work
    data, storage, home = work / "data", work / "storage", work / "dagster_home"
    for folder in (storage, home):
        shutil.rmtree(folder, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ.update(
        RADVLM_DATA_ROOT=str(data),
        RADVLM_STORAGE_ROOT=str(storage),
        DAGSTER_HOME=str(home),
        RADVLM_LLM_BACKEND="offline",
    )
    stages = Stages()
    stages.run(
        "data root (resumed if there)",
        "generate",
        {"data": str(data), "fraction": args.fraction},
    )
    main_pass(stages)
    stages.run(
        "training data loader",
        "loader",
        {
            "model": str(work / "tiny-model"),
            "steps": args.loader_steps,
            "micro_batch": 8,
            "workers": args.loader_workers,
        },
    )
    stages.run("grounding + classification metrics, full evaluation sets", "metrics")
    if not args.skip_operating_cases:
        operating_cases(stages, args, storage)
    for name, folder in (("data root", data), ("storage root", storage)):
        size = subprocess.run(["du", "-sh", str(folder)], capture_output=True, text=True).stdout.split()[0]
        stages.rows.append({"stage": f"disk: {name}", "notes": size})
    return stages.rows


# --- Reporting ----------------------------------------------------------------------------------------
def _number(value, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def table(rows: list[dict]) -> str:
    return markdown_table(
        HEADER,
        (
            [
                row["stage"],
                _number(row.get("wall_s")),
                _number(row.get("cpu_s")),
                _number(row.get("peak_rss_gib"), 2),
                _number(row.get("rows_in")),
                _number(row.get("rows_out")),
                _number(row.get("quarantined")),
                row.get("notes", ""),
            ]
            for row in rows
        ),
    )


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {memory:.0f} GiB RAM, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end"
    )


def summed(rows: list[dict], prefix: str) -> dict:
    chosen = [row for row in rows if row["stage"].startswith(prefix)]
    return {
        "stage": f"{prefix}* ({len(chosen)} runs)",
        "wall_s": sum(row.get("wall_s", 0) for row in chosen),
        "cpu_s": sum(row.get("cpu_s", 0) for row in chosen),
        "peak_rss_gib": max((row.get("peak_rss_gib", 0) for row in chosen), default=0),
        "rows_out": sum(row.get("rows_out") or 0 for row in chosen),
    }


def extrapolate(small: dict, large: dict) -> str:
    """Each stage to fraction 1.0 through the line of its two measured points (wall, CPU, RSS), never
    below the larger measurement."""
    a, b = small["fraction"], large["fraction"]
    by_stage = {row["stage"]: row for row in small["rows"]}
    keys = ("wall_s", "cpu_s", "peak_rss_gib")
    rows = []
    for row in large["rows"]:
        other = by_stage.get(row["stage"], {})
        if "wall_s" not in row or "wall_s" not in other:
            continue
        cells = []
        for key in keys:
            if key not in row or key not in other:
                cells.append("")
                continue
            at_one = row[key] + (row[key] - other[key]) / (b - a) * (1.0 - b)
            cells.append(f"{max(row[key], at_one):,.{2 if key == 'peak_rss_gib' else 1}f}")
        rows.append([row["stage"], *cells])
    header = [f"stage (measured at {a} and {b})", "wall s at 1.0", "CPU s at 1.0", "peak RSS GiB at 1.0"]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--work", type=Path, help="default /tmp/scale-rehearsal-<fraction>")
    parser.add_argument("--loader-steps", type=int, default=300)
    parser.add_argument("--loader-workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--skip-operating-cases", action="store_true")
    parser.add_argument("--json", type=Path, help="write the measurements here (for --extrapolate)")
    parser.add_argument("--results", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--extrapolate", nargs=2, type=Path, metavar=("SMALL", "LARGE"))
    args = parser.parse_args(argv)
    if args.extrapolate:
        small, large = (json.loads(path.read_text()) for path in args.extrapolate)
        print(extrapolate(small, large))
        return
    args.work = args.work or Path(f"/tmp/scale-rehearsal-{args.fraction}")
    started = time.perf_counter()
    rows = rehearse(args)
    rows += [
        summed(rows, prefix)
        for prefix in ("corpus [", "new release: ")
        if any(r["stage"].startswith(prefix) for r in rows)
    ]
    rows.append({"stage": "rehearsal, end to end", "wall_s": time.perf_counter() - started})
    section = f"Scale rehearsal at fraction {args.fraction} ({date.today().isoformat()}; {machine()}):\n\n{table(rows)}\n"
    print(section)
    if args.json:
        args.json.write_text(
            json.dumps({"fraction": args.fraction, "machine": machine(), "rows": rows}, indent=1, default=str)
        )
    if args.results:
        with args.results.open("a") as handle:
            handle.write("\n" + section)


if __name__ == "__main__":
    main()
