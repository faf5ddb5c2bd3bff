"""`make demo`'s own machinery: which partitions go first, and the pool slots it lends itself."""

from __future__ import annotations

import shutil

from dagster import DagsterInstance

from demo import POOLS, pool_slots, work_first
from radvlm_pipeline.layout import PROJECT_ROOT


def test_the_partitions_that_do_the_most_go_first():
    recipes = ["classification", "conversation", "all", "phrase_grounding"]
    assert sorted(recipes, key=work_first)[:2] == ["all", "conversation"]
    models = ["oracle", "chexagent", "llava_onevision", "all", "classification"]
    ordered = sorted(models, key=work_first)
    assert ordered.index("llava_onevision") < ordered.index("chexagent") < ordered.index("classification")


def test_pool_slots_are_lent_for_the_demo_and_given_back(tmp_path):
    shutil.copy(PROJECT_ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("llm", 3)  # set by hand before the demo

        def limits():
            return {limit.name: (limit.limit, limit.from_default) for limit in storage.get_pool_limits()}

        with pool_slots(instance, 2):
            inside = limits()
            assert inside["training"][0] == 2 and inside["gpu_inference"][0] == 2
            assert inside["llm"][0] == 3  # never fewer than the user gave it
        after = limits()
        assert after["llm"] == (3, False)
        assert all(pool not in after or after[pool][1] for pool in POOLS if pool != "llm")

        # A demo killed inside the block never gives the slots back; the next demo does, first.
        killed = pool_slots(instance, 2)
        killed.__enter__()  # and never left: its lent slots stay, as after kill -9
        assert limits()["training"] == (2, False)
        with pool_slots(instance, 1):
            assert limits()["training"][0] == 1
        assert limits() == after


def test_a_lane_that_dies_fails_its_stage_not_the_demo(capsys):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from demo import succeeded

    done, died = Future(), Future()
    done.set_result(True)
    died.set_exception(BrokenProcessPool("a child process terminated abruptly"))
    assert [succeeded(done), succeeded(died)] == [True, False]
    assert "terminated abruptly" in capsys.readouterr().err
