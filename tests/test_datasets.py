"""Loaders of COCO-IT and ARO against tiny files in the published formats, and benches on them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from diffpid.bench.compositional_run import compositional_items, run_compositional
from diffpid.bench.localization_run import coco_it_items, run_localization
from diffpid.datasets.aro import SYMMETRIC_RELATIONS, read_order, read_vg_attribution, read_vg_relation
from diffpid.datasets.coco_it import CSV_COLUMNS, CocoIT, read_coco_it_csv
from diffpid.errors import DatasetError
from tiny_pipelines import pixel_folder

pytest.importorskip("pycocotools")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools on numpy 2


def _square(x0, y0, x1, y1):
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]


def write_coco(root, rows=None):
    """Two images (40x30 PNG, 20x20 JPG), categories dog and table, polygon instances."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(root / "val2017" / "000000000007.png")
    Image.fromarray(np.full((20, 20, 3), 60, np.uint8)).save(root / "val2017" / "000000000009.jpg")
    inst = {
        "images": [{"id": 7, "file_name": "000000000007.png", "height": 30, "width": 40},
                   {"id": 9, "file_name": "000000000009.jpg", "height": 20, "width": 20}],
        "categories": [{"id": 18, "name": "dog", "supercategory": "animal"},
                       {"id": 67, "name": "dining table", "supercategory": "furniture"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "segmentation": [_square(2, 2, 12, 10)], "area": 80.0,
             "bbox": [2, 2, 10, 8], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 18, "segmentation": [_square(20, 15, 30, 25)], "area": 100.0,
             "bbox": [20, 15, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 67, "segmentation": [_square(0, 20, 40, 30)], "area": 400.0,
             "bbox": [0, 20, 40, 10], "iscrowd": 0},
            {"id": 4, "image_id": 9, "category_id": 67, "segmentation": [_square(5, 5, 15, 15)], "area": 100.0,
             "bbox": [5, 5, 10, 10], "iscrowd": 0},
        ],
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(inst))
    rows = rows if rows is not None else [
        (7, "dog", "a dog and a dog on the table", "a  and a  on the table", "dog"),
        (7, "dining table", "a dog on the table", "a dog on the ", "table"),
        (9, "dining table", "the big table", "the big ", "table"),
    ]
    with open(root / "COCO-IT.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(rows)
    return root


def test_coco_it_csv_rows(tmp_path):
    root = write_coco(tmp_path)
    rows = read_coco_it_csv(root / "COCO-IT.csv")
    assert len(rows) == 3
    r = rows[1]
    assert (r.image_id, r.label, r.caption, r.word, r.line) == (7, "dining table", "a dog on the table", "table", 3)
    assert r.context == "a dog on the "
    bad = tmp_path / "bad.csv"
    bad.write_text("Image ID,Label\n1,dog\n")
    with pytest.raises(DatasetError):
        read_coco_it_csv(bad)
    bad.write_text(",".join(CSV_COLUMNS) + "\nseven,dog,a dog,a ,dog\n")
    with pytest.raises(DatasetError, match="not a number"):
        read_coco_it_csv(bad)
    with pytest.raises(DatasetError):
        read_coco_it_csv(tmp_path / "missing.csv")


def test_coco_it_masks_are_instance_unions(tmp_path):
    from pycocotools import mask as mask_utils

    data = CocoIT(write_coco(tmp_path))
    rows = data.rows
    assert data.image_path(rows[0]).endswith("val2017/000000000007.png")
    dog = data.mask(rows[0])
    assert dog.shape == (30, 40) and dog.dtype == bool
    # the union of the two dog polygons, rasterised as pycocotools does
    ref = np.zeros((30, 40), bool)
    for poly in (_square(2, 2, 12, 10), _square(20, 15, 30, 25)):
        ref |= mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], 30, 40))).astype(bool)
    assert (dog == ref).all()
    assert abs(int(dog.sum()) - 180) <= 40  # about the polygons' areas (80 + 100)
    assert dog[5, 6] and dog[20, 25] and not dog[0, 39] and not dog[14, 15]
    table = data.mask(rows[1])
    assert table[25].all() and not table[:19].any()
    assert data.mask(rows[2]).shape == (20, 20) and data.mask(rows[2])[10, 10]


def test_coco_it_errors(tmp_path):
    root = write_coco(tmp_path / "a", rows=[(7, "cat", "a cat", "a ", "cat"), (5, "dog", "a dog", "a ", "dog"),
                                          (9, "dog", "a dog", "a ", "dog")])
    data = CocoIT(root)
    with pytest.raises(DatasetError, match="category"):
        data.mask(data.rows[0])
    with pytest.raises(DatasetError, match="not in"):
        data.image_path(data.rows[1])
    with pytest.raises(DatasetError, match="no 'dog' instance"):
        data.mask(data.rows[2])
    with pytest.raises(DatasetError, match="not found"):
        CocoIT(tmp_path / "nowhere")


def test_localization_bench_on_coco_it(tmp_path):
    rows = [(7, "dog", "a dog and a dog on the table", "a  and a  on the table", "dog"),
            (7, "dining table", "a dog on the table", "a dog on the ", "table"),
            (9, "dining table", "the big table", "the big ", "table"),
            (9, "dining table", "the big table", "the big ", "table")]  # a repeated row is one item
    data = CocoIT(write_coco(tmp_path / "coco", rows))
    items = coco_it_items(data)
    assert len(data) == 4 and len(items) == 3 and len({i.id for i in items}) == 3
    case = items[1].data()
    assert case.word == "table" and case.mask.shape == (30, 40) and case.mi_prompt == "dining table"
    rep = run_localization(items, out=str(tmp_path / "out"), model=pixel_folder(), dataset="coco-it",
                           methods=("cmi", "attention", "whole_image"), samples=3, steps=2, progress=False)
    assert rep.summary.done == 3 and not rep.summary.failed
    by = {s.method: s.sweep for s in rep.scores}
    # whole image: mask fraction of each mask resized (nearest) to the model's 16x16 images
    from diffpid.bench.localization import resize_mask

    fr = [resize_mask(data.mask(r), (16, 16)).mean() for r in data.rows[:3]]
    assert by["whole_image"].miou == pytest.approx(np.mean(fr))
    assert 0 <= by["cmi"].miou <= 1 and by["cmi"].items == 3


def write_aro(root):
    (root / "images").mkdir(parents=True)
    img = np.zeros((30, 50, 3), np.uint8)
    img[:, :25] = 255
    Image.fromarray(img).save(root / "images" / "1.jpg")
    rel = [
        {"image_id": "1", "relation_name": "on", "bbox_x": 5, "bbox_y": 4, "bbox_w": 30, "bbox_h": 20,
         "true_caption": "the cat on the table", "false_caption": "the table on the cat", "image_path": "1.jpg"},
        {"image_id": "1", "relation_name": "near", "bbox_x": 0, "bbox_y": 0, "bbox_w": 50, "bbox_h": 30,
         "true_caption": "the dog and the car", "false_caption": "the car and the dog", "image_path": "1.jpg"},
    ]
    att = [{"image_id": "1", "attributes": ["red", "blue"], "bbox_x": 0, "bbox_y": 0, "bbox_w": 20, "bbox_h": 10,
            "true_caption": "the red cat and the blue dog", "false_caption": "the blue cat and the red dog",
            "image_path": "1.jpg"}]
    (root / "visual_genome_relation.json").write_text(json.dumps(rel))
    (root / "visual_genome_attribution.json").write_text(json.dumps(att))
    order = root / "order"
    order.mkdir()
    for k in (0, 1, 10, 2):
        cases = [{"image": "images/1.jpg", "caption_options": [f"a cat on a table {k}", "table a on cat a",
                                                                 "a on cat table a", "cat a a on table",
                                                                 "a table on a cat"]}]
        (order / f"coco_order_{k}.json").write_text(json.dumps(cases))
    return root


def test_aro_visual_genome(tmp_path):
    root = write_aro(tmp_path)
    rel = read_vg_relation(root)
    assert [c.group for c in rel] == ["on", "near"] and rel[0].correct == 1
    assert rel[0].captions == ("the table on the cat", "the cat on the table")
    im = rel[0].load_image()
    assert im.size == (30, 20)  # cropped to bbox_w x bbox_h
    px = np.asarray(im)
    assert (px[:, :20] > 200).all() and (px[:, 20:] < 50).all()  # the crop starts at x=5: white until x=25
    att = read_vg_attribution(root)
    assert att[0].group == "red_blue" and att[0].captions[1] == "the red cat and the blue dog"
    assert "near" in SYMMETRIC_RELATIONS and "on" not in SYMMETRIC_RELATIONS
    with pytest.raises(DatasetError, match="images folder"):
        read_vg_relation(root, images=tmp_path / "none")
    (root / "visual_genome_relation.json").write_text(json.dumps([{"image_path": "1.jpg"}]))
    with pytest.raises(DatasetError, match="lacks a field"):
        read_vg_relation(root)


def test_aro_order_files(tmp_path):
    root = write_aro(tmp_path)
    cases = read_order(root / "order", images=root)
    assert [c.captions[0][-2:].strip() for c in cases] == ["0", "1", "2", "10"]  # numeric file order
    assert all(c.correct == 0 and len(c.captions) == 5 and c.group == "all" for c in cases)
    assert cases[0].load_image().size == (50, 30)
    one = read_order(root / "order" / "coco_order_2.json", images=root)
    assert len(one) == 1
    (root / "karpathy.json").write_text(json.dumps([{"image": "images/1.jpg", "caption": ["a cat"]}]))
    with pytest.raises(DatasetError, match="Karpathy"):
        read_order(root / "karpathy.json", images=root)
    with pytest.raises(DatasetError, match="no flickr30k_order"):
        read_order(root / "order", images=root, prefix="flickr30k_order")


def test_compositional_bench_on_vg_relation(tmp_path):
    root = write_aro(tmp_path / "aro")
    items = compositional_items("vg-relation", root=str(root))
    assert len(items) == 2
    case = items[0].data()
    assert case.captions[case.correct] == "the cat on the table" and case.image.size == (30, 20)
    rep = run_compositional(items, out=str(tmp_path / "out"), dataset="vg-relation", model=pixel_folder(), samples=3,
                            progress=False)
    assert rep.micro.items == 2 and rep.chance == 0.5
    # ARO's macro accuracy leaves out the symmetric relation "near"
    assert rep.macro.included == 1 and [g.group for g in rep.macro.groups if g.included] == ["on"]
    order = compositional_items("coco-order", root=str(root / "order"), images=str(root), n=2)
    assert len(order) == 2 and order[0].data().captions[0] == "a cat on a table 0"
