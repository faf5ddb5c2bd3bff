"""The code location loads, and every asset explains itself in the UI."""

from definitions import defs


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
