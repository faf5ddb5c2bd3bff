"""The Dagster UI, tested like a user: `dagster dev` on the project, headless Chromium, every asset
group on the lineage page, a source asset materialized from its page with the Materialize button.

Needs Debian's chromium (installed here when missing and we are root) and the PyPI playwright package
driving it; never `playwright install`, which downloads a browser.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from process_groups import stop_process_group

from definitions import defs
from radvlm_pipeline.layout import PROJECT_ROOT

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("RADVLM_TEST_OUTPUT", PROJECT_ROOT / "build" / "test-output")) / "ui"


def ensure_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Debian's chromium is not installed and cannot be installed without root and apt-get")
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    ensure_chromium()
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = dict(
        os.environ, DAGSTER_HOME=str(home), RADVLM_STORAGE_ROOT=str(tmp_path_factory.mktemp("storage"))
    )
    log = open(home / "dagster_dev.log", "w")
    process = subprocess.Popen(
        [
            str(Path(os.sys.executable).parent / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                answer = graphql(
                    port, "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
                )
                if "LOADED" in json.dumps(answer):
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not load the code location; log: {home / 'dagster_dev.log'}")
            time.sleep(1)
        yield port
    finally:
        stop_process_group(process)
        log.close()


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser.new_page(viewport={"width": 1600, "height": 1000})
        browser.close()


def test_lineage_page_lists_every_asset_group(dagster_dev, page):
    graph = defs.resolve_asset_graph()
    groups = {graph.get(key).group_name for key in graph.materializable_asset_keys}
    page.goto(f"http://127.0.0.1:{dagster_dev}/asset-groups", wait_until="networkidle")
    for group in sorted(groups):
        page.get_by_text(group, exact=True).first.wait_for(timeout=30_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "lineage.png"))


def test_materialize_a_source_asset_from_its_page(dagster_dev, page):
    page.goto(f"http://127.0.0.1:{dagster_dev}/assets/chexpert", wait_until="networkidle")
    button = page.get_by_role("button", name=re.compile(r"(^| )Materialize$"))
    with page.expect_response(lambda r: "LaunchPipelineExecution" in (r.request.post_data or "")) as launched:
        button.first.click()
    launch = launched.value.json()["data"]["launchPipelineExecution"]
    assert launch["__typename"] == "LaunchRunSuccess", launch
    run = launch["run"]
    run_id = run.get("runId") or run["id"]
    deadline = time.monotonic() + 180
    status = None
    while time.monotonic() < deadline:
        status = graphql(
            dagster_dev,
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
            {"id": run_id},
        )["data"]["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    page.goto(f"http://127.0.0.1:{dagster_dev}/runs/{run_id}", wait_until="networkidle")
    page.get_by_text("Success", exact=False).first.wait_for(timeout=30_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "materialized_chexpert.png"))
