"""Synthetic Chest ImaGenome 1.0.0 (silver dataset), as released, on the MIMIC-CXR sample's images.

Written under ``chest-imagenome/silver_dataset/``::

    splits/{train,valid,test}.csv     ,subject_id,study_id,dicom_id,path,ViewPosition (own patient split)
    scene_graph/<dicom_id>_SceneGraph.json   objects[] with bbox_name, original_x1..original_y2, ...

Region boxes lie on the anatomy drawn in the MIMIC-CXR image. Chest ImaGenome gets its own patient split,
deliberately different from MIMIC-CXR's (the paper's code mixed the two).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from radvlm_pipeline.sample_data.common import REGIONS, Fault, region_box, rng_for
from radvlm_pipeline.sample_data.files import csv_bytes, write_file, write_table
from radvlm_pipeline.sample_data.mimic_cxr import MimicImage, MimicStudy, dirt_host, unreadable_image
from radvlm_pipeline.sources.chest_imagenome import scene_graph_file

SPLIT_FILES = {
    "train": "silver_dataset/splits/train.csv",
    "valid": "silver_dataset/splits/valid.csv",
    "test": "silver_dataset/splits/test.csv",
}
SPLIT_COLUMNS = ("", "subject_id", "study_id", "dicom_id", "path", "ViewPosition")
SPLIT_SHARES = (("train", 0.65), ("valid", 0.12), ("test", 0.23))
SUBJECT_FRACTION = 0.7
# Per MIMIC-CXR patient at paper scale: the Chest ImaGenome split, or "" for a patient it leaves out. The
# release covers nearly every frontal image of MIMIC-CXR-JPG (242,072 scene graphs for ~243,000).
SCALE_SUBJECT_SHARES = (*SPLIT_SHARES, ("", 0.005))

# The faults Variant.DIRTY injects. Rows appended to a file keep every clean row where it was, so the
# dirty sample is the clean one plus these; ``faults`` names the exact file and row of each.
DIRT = {
    "box_outside_image": "a train image's trachea lies right of the image (see faults())",
    "inverted_box": "the same image's aortic arch has x2 < x1",
    "missing_scene_graph": "a train row whose scene graph JSON is not written (appended)",
    "malformed_json": "a train row whose scene graph JSON is truncated (appended)",
    "not_in_mimic_images": "a train row for MIMIC-CXR's unreadable image (appended)",
    "duplicate_row": "train row repeating the first one (appended)",
}


def patient_splits(studies: list[MimicStudy], seed: int) -> dict[str, str]:
    """Chest ImaGenome's own patient split (train / valid / test), independent of MIMIC-CXR's."""
    subjects = sorted({s.subject_id for s in studies})
    rng = rng_for(seed, "imagenome", "subjects")
    chosen = [
        subjects[int(i)]
        for i in sorted(
            rng.choice(len(subjects), size=round(len(subjects) * SUBJECT_FRACTION), replace=False)
        )
    ]
    order = rng.permutation(len(chosen))
    split_of, start = {}, 0
    for split, share in SPLIT_SHARES:
        count = round(share * len(chosen)) if split != "test" else len(chosen) - start
        for index in order[start : start + count]:
            split_of[chosen[int(index)]] = split
        start += count
    return split_of


def _scale_224(width: int, height: int) -> tuple[float, float, float]:
    """Chest ImaGenome's x1..y2 are on the image resized to 224 px (longest side) and padded square."""
    ratio = 224 / max(width, height)
    return ratio, (224 - width * ratio) / 2, (224 - height * ratio) / 2


def scene_graph(study: MimicStudy, image: MimicImage, seed: int) -> dict:
    """The parts of a silver scene graph a reader touches, shaped as in the release."""
    rng = rng_for(seed, "imagenome", "scene graph", image.dicom_id)
    regions = list(REGIONS)
    if rng.random() < 0.15:  # some real scene graphs miss a few regions
        for index in sorted(rng.choice(len(regions), size=2, replace=False), reverse=True):
            regions.pop(int(index))
    overhang = rng.random() < 0.2  # some real boxes overhang the image edge; readers clip them
    ratio, pad_x, pad_y = _scale_224(image.width, image.height)
    objects = []
    for name in regions:
        x1, y1, x2, y2 = region_box(name, rng)
        box = [
            round(x1 * image.width),
            round(y1 * image.height),
            round(x2 * image.width),
            round(y2 * image.height),
        ]
        if overhang and name == "abdomen":
            box[3] = round(image.height * 1.04)
        scaled = [
            round(box[0] * ratio + pad_x),
            round(box[1] * ratio + pad_y),
            round(box[2] * ratio + pad_x),
            round(box[3] * ratio + pad_y),
        ]
        objects.append(
            {
                "object_id": f"{image.dicom_id}_{name}",
                "x1": scaled[0],
                "y1": scaled[1],
                "x2": scaled[2],
                "y2": scaled[3],
                "width": scaled[2] - scaled[0],
                "height": scaled[3] - scaled[1],
                "bbox_name": name,
                "synsets": [],
                "name": name.capitalize(),
                "original_x1": box[0],
                "original_y1": box[1],
                "original_x2": box[2],
                "original_y2": box[3],
                "original_width": box[2] - box[0],
                "original_height": box[3] - box[1],
            }
        )
    attributes = [
        {
            "bbox_name": placed.region,
            "synsets": [],
            "name": placed.region.capitalize(),
            "attributes": [
                [
                    f"anatomicalfinding|{'yes' if not placed.uncertain else 'maybe'}|"
                    f"{placed.finding.key.replace('_', ' ')}"
                ]
            ],
            "attributes_ids": [[placed.finding.key]],
            "phrases": [placed.finding.sentences[0].format(side=placed.side)],
            "phrase_IDs": [f"{study.study_id}|{index}"],
            "sections": ["finalreport"],
            "comparison_cues": [[]],
            "temporal_cues": [[]],
            "severity_cues": [[]],
            "texture_cues": [[]],
            "object_id": f"{image.dicom_id}_{placed.region}",
        }
        for index, placed in enumerate(study.case.findings)
    ]
    decade = study.case.age // 10 * 10
    return {
        "image_id": image.dicom_id,
        "viewpoint": image.view,
        "patient_id": int(study.subject_id),
        "study_id": int(study.study_id),
        "gender": study.case.sex,
        "age_decile": f"{decade}-{decade + 10}",
        "reason_for_exam": "___ with shortness of breath",
        "StudyOrder": study.order,
        "StudyDateTime": f"{study.study_date.isoformat()} 00:00:00 UTC",
        "objects": objects,
        "attributes": attributes,
        "relationships": [],
    }


def scene_graph_json(study: MimicStudy, image: MimicImage, seed: int) -> str:
    return json.dumps(scene_graph(study, image, seed))


def _split_row(study: MimicStudy, image: MimicImage) -> list[object]:
    """A split-file row; its path names MIMIC-CXR's DICOM, as the release does."""
    return [
        study.subject_id,
        study.study_id,
        image.dicom_id,
        f"{study.folder}/{image.dicom_id}.dcm",
        image.view,
    ]


def _box_fault_image(studies: list[MimicStudy], seed: int) -> MimicImage:
    """The first Chest ImaGenome train image whose scene graph has the two regions the dirt breaks."""
    split_of = patient_splits(studies, seed)
    return next(
        image
        for study in studies
        if split_of.get(study.subject_id) == "train"
        for image in study.frontal_images()
        if {"trachea", "aortic arch"} <= {o["bbox_name"] for o in scene_graph(study, image, seed)["objects"]}
    )


def write(root: Path, studies: list[MimicStudy], seed: int, dirty: bool) -> dict[str, int]:
    split_of = patient_splits(studies, seed)
    rows: dict[str, list[list[object]]] = {split: [] for split in SPLIT_FILES}
    graphs: dict[str, dict] = {}
    for study in studies:
        split = split_of.get(study.subject_id)
        if split is None:
            continue
        for image in study.frontal_images():
            rows[split].append(_split_row(study, image))
            graphs[image.dicom_id] = scene_graph(study, image, seed)

    malformed: set[str] = set()
    if dirty:
        target = _box_fault_image(studies, seed)
        for obj in graphs[target.dicom_id]["objects"]:
            if obj["bbox_name"] == "trachea":  # box_outside_image
                obj["original_x1"], obj["original_x2"] = target.width + 10, target.width + 40
            if obj["bbox_name"] == "aortic arch":  # inverted_box
                obj["original_x1"], obj["original_x2"] = obj["original_x2"], obj["original_x1"]
        outsiders = [s for s in studies if s.subject_id not in split_of and s.frontal_images()]
        for study, fault in ((outsiders[0], "missing_scene_graph"), (outsiders[1], "malformed_json")):
            image = study.frontal_images()[0]
            rows["train"].append(_split_row(study, image))
            if fault == "malformed_json":
                graphs[image.dicom_id] = scene_graph(study, image, seed)
                malformed.add(image.dicom_id)
        host, image = dirt_host(studies, "train"), unreadable_image(studies, seed)
        rows["train"].append(_split_row(host, image))
        graphs[image.dicom_id] = scene_graph(host, image, seed)  # not_in_mimic_images
        rows["train"].append(list(rows["train"][0]))  # duplicate_row

    for split, file in SPLIT_FILES.items():
        write_file(root / file, csv_bytes(SPLIT_COLUMNS, ([i, *r] for i, r in enumerate(rows[split]))))
    for dicom_id, graph in graphs.items():
        text = json.dumps(graph)
        write_file(
            root / scene_graph_file(dicom_id), text[: len(text) // 2] if dicom_id in malformed else text
        )
    return {"images": sum(len(r) for r in rows.values()), "scene_graphs": len(graphs)}


def faults(studies: list[MimicStudy], seed: int) -> dict[str, Fault]:
    """Where each fault of ``DIRT`` lies in the dirty sample: fault -> Fault."""
    split_of = patient_splits(studies, seed)
    train_rows = sum(len(s.frontal_images()) for s in studies if split_of.get(s.subject_id) == "train")
    target = _box_fault_image(studies, seed)
    target_study = next(s for s in studies if target in s.images)
    graph = scene_graph_file(target.dicom_id)
    region_row = {
        o["bbox_name"]: n for n, o in enumerate(scene_graph(target_study, target, seed)["objects"], start=1)
    }
    train_csv = SPLIT_FILES["train"]
    return {
        "box_outside_image": Fault(graph, region_row["trachea"], "box_outside_image"),
        "inverted_box": Fault(graph, region_row["aortic arch"], "inverted_box"),
        "missing_scene_graph": Fault(train_csv, train_rows + 1, "missing_scene_graph"),
        "malformed_json": Fault(train_csv, train_rows + 2, "malformed_json"),
        "not_in_mimic_images": Fault(train_csv, train_rows + 3, "not_in_mimic_images"),
        "duplicate_row": Fault(train_csv, train_rows + 4, "duplicate_row"),
    }


def write_scale(root: Path, frontal: pl.DataFrame, scene_graphs: bool) -> dict[str, int]:
    """The split files at paper scale from MIMIC-CXR's frontal images (``mimic_cxr.write_scale``). The
    scene graphs, when written, come with the MIMIC-CXR study they describe (``mimic.write_scale``)."""
    imagenome = frontal.filter(pl.col("imagenome") != "")
    for name, file in SPLIT_FILES.items():
        split = imagenome.filter(pl.col("imagenome") == name).select(
            "subject_id",
            "study_id",
            "dicom_id",
            pl.col("path") + ".dcm",
            "ViewPosition",
        )
        write_table(
            root / file, split.with_row_index("").write_csv(quote_style="never")
        )  # header ",subject_id"
    return {"images": imagenome.height, "scene_graphs": imagenome.height if scene_graphs else 0}
