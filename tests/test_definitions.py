"""The code location loads, every asset explains itself in the UI, and imports run one way."""

import ast
from pathlib import Path

import pytest

from definitions import defs

ROOT = Path(__file__).resolve().parent.parent


def test_definitions_load_and_validate():
    defs.resolve_all_job_defs()
    graph = defs.resolve_asset_graph()
    assert graph.materializable_asset_keys


def test_every_asset_has_group_kinds_and_description():
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        spec = node.to_asset_spec() if hasattr(node, "to_asset_spec") else None
        assert node.group_name and node.group_name != "default", key
        assert node.description, key
        if spec is not None:
            assert spec.kinds, key


def test_source_assets_in_sources_group():
    graph = defs.resolve_asset_graph()
    sources = {
        k.to_user_string() for k in graph.materializable_asset_keys if graph.get(k).group_name == "sources"
    }
    assert sources == {
        "mimic_cxr",
        "chexpert",
        "chexpert_plus",
        "chest_imagenome",
        "vindr_cxr",
        "ms_cxr",
        "padchest_gr",
    }


def imported_packages(package: str) -> set[str]:
    """The top-level packages the modules of ``package`` import."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    "package, never",
    [
        ("radvlm_pipeline", {"dagster", "assets", "resources", "sensors", "definitions"}),
        ("resources", {"assets", "sensors", "definitions"}),
        ("assets", {"sensors", "definitions"}),
    ],
)
def test_imports_run_one_way(package, never):
    """The domain library runs without Dagster; resources and assets never import what is built on them
    (the sensors import the assets: the other way would be a loop)."""
    assert not imported_packages(package) & never
