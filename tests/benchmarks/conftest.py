"""A tiny synthetic defect dataset in the benchmarks' layout (images/, masks/, manifest.csv)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image


def _dataset(root, name="tiny", n=14, size=48):
    folder = root / name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = (150 + rng.normal(0, 6, (size, size))).clip(0, 255)
        mask = np.zeros((size, size), bool)
        if i % 3:  # two of three images have a dark square defect
            y, x = rng.integers(8, size - 20, 2)
            mask[y : y + 10, x : x + 10] = True
            img[mask] = 60
        Image.fromarray(img.astype(np.uint8), "L").save(folder / "images" / f"im{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255, "L").save(folder / "masks" / f"im{i}.png")
        rows.append({"id": f"im{i}"})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    """Data root holding ``tiny``: 14 grey images, two of three with a dark square."""
    return _dataset(tmp_path)
