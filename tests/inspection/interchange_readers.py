"""Read our exports with the other tools' own code: pycocotools' COCO API and
label-studio-sdk's converter. Run with .venv-labelstudio (its pins stay out of
the product); not a test module: test_interchange.py runs it as a subprocess.

    .venv-labelstudio/bin/python tests/inspection/interchange_readers.py DIR

DIR holds coco-gt.json, coco-pred.json, labelstudio.json, config.xml and
expected.npz (``gt-<sha256>``: (H, W) bool, ``pred-<sha256>``: (H, W) uint8
class numbers). Prints a JSON summary; exits 1 on the first mismatch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    import numpy as np
    from label_studio_sdk.converter import Converter
    from label_studio_sdk.converter.brush import decode_rle
    from pycocotools.coco import COCO

    root = Path(sys.argv[1])
    expected = np.load(root / "expected.npz")
    summary = {"coco_gt_images": 0, "coco_pred_images": 0, "ls_annotations": 0, "ls_predictions": 0}

    # COCO: pycocotools' own API decodes every annotation (annToMask)
    for name, prefix in (("coco-gt.json", "gt"), ("coco-pred.json", "pred")):
        coco = COCO(str(root / name))
        for img in coco.dataset["images"]:
            want = expected[f"{prefix}-{img['sha256']}"]
            got = np.zeros((img["height"], img["width"]), np.uint8)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
                m = coco.annToMask(ann).astype(bool)
                assert not (got[m] != 0).any(), "instances overlap"
                got[m] = ann["category_id"] if prefix == "pred" else 1
            if prefix == "gt":
                assert (got.astype(bool) == want).all(), (
                    f"COCO ground truth differs: {img['file_name']}"
                )
            else:
                assert (got == want).all(), f"COCO predictions differ: {img['file_name']}"
            summary[f"coco_{prefix}_images"] += 1

    # Label Studio: the converter's BRUSH_TO_NUMPY export of our tasks' annotations
    tasks = json.loads((root / "labelstudio.json").read_text())
    out = root / "ls-numpy"
    out.mkdir(exist_ok=True)
    Converter(config=(root / "config.xml").read_text(), project_dir=str(root)).convert(
        str(root / "labelstudio.json"), str(out), "BRUSH_TO_NUMPY", is_dir=False
    )
    layers = {p.name: np.load(p) for p in out.glob("*.npy")}
    for task in tasks:
        sha = task["data"]["sha256"]
        for ann in task["annotations"]:
            mine = [
                a
                for n, a in layers.items()
                if n.startswith(f"task-{task['id']}-annotation-{ann['id']}-")
            ]
            want = expected[f"gt-{sha}"]
            got = np.zeros(want.shape, bool)
            for layer in mine:
                got |= layer > 0
            assert (got == want).all(), f"Label Studio annotation differs: task {task['id']}"
            summary["ls_annotations"] += 1
        for pred in task["predictions"]:  # the converter exports annotations only
            want = expected[f"pred-{sha}"]
            got = np.zeros(want.shape, np.uint8)
            for r in pred["result"]:
                h, w = r["original_height"], r["original_width"]
                alpha = decode_rle(r["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 0
                labels = json.loads((root / "classes.json").read_text())
                got[alpha] = labels.index(r["value"]["brushlabels"][0]) + 1
            assert (got == want).all(), f"Label Studio prediction differs: task {task['id']}"
            summary["ls_predictions"] += 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
