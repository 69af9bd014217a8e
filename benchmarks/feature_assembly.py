"""How the backbone backend assembles its feature planes: into one array, a few
rows at a time, every plane in C order (the product:
:func:`prompting.features.base.planes_stack`, the classic blur's C-order
upsampling), against the code at d5bafc7: one ``np.stack`` per group, a
concatenation, and column-major blurred planes at sigma >= 4
(:mod:`benchmarks.predict_reference`), in one process, interleaved, on the same
images.

    python -m benchmarks.feature_assembly [--dataset crackforest] [--images 8]
                                          [--repeats 3] [--zoom 1,3]

Each evaluation image of the protocol's seed 0 is taken at every ``--zoom``
(enlarged by Lanczos, then brought to the default working resolution as a
prediction does) and its features extracted with each assembly. Prints the
medians of a whole extraction (classic planes, network, assembly) and checks
that both give the same features, bit for bit.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.predict_reference import planes_stack_reference, smooth_reference
from benchmarks.propagation_engine import cpu_name
from benchmarks.quality_common import DEFAULT_DATA_ROOT, dataset_load, protocol_samples


@contextmanager
def _assembly(path: tuple):
    """The backend's modules with ``path`` (assembly, blur) as theirs."""
    import prompting.features.backbone as backbone
    import prompting.features.classic as classic

    saved = backbone.planes_stack, classic.planes_stack, classic._smooth
    backbone.planes_stack = classic.planes_stack = path[0]
    classic._smooth = path[1]
    try:
        yield
    finally:
        backbone.planes_stack, classic.planes_stack, classic._smooth = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="crackforest")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--zoom", default="1,3", help="comma-separated enlargements")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    args = parser.parse_args(argv)

    import torch

    from prompting.features import backend_create
    from prompting.features.base import planes_stack
    from prompting.features.classic import _smooth
    from prompting.worksize import WORK_MAX_SIDE, work_image, work_pixels

    _, evaluation = protocol_samples(dataset_load(args.data_root, args.dataset), 0)
    backend = backend_create("backbone")
    paths = {
        "np.stack per group (d5bafc7)": (planes_stack_reference, smooth_reference),
        "by rows, C order (product)": (planes_stack, _smooth),
    }
    print(
        f"{args.dataset}: {args.images} evaluation images, medians of {args.repeats} passes, "
        f"CPU {cpu_name()}, torch threads {torch.get_num_threads()}"
    )
    print("| zoom | features (H x W x F) | assembly | extract s | same features |")
    print("|---|---|---|---|---|")
    for zoom in (int(z) for z in args.zoom.split(",")):
        images = []
        for s in evaluation[: args.images]:
            h, w = s.rgb.shape[:2]
            big = work_pixels(s.rgb, (h * zoom, w * zoom)) if zoom > 1 else s.rgb
            images.append(work_image(big, None, WORK_MAX_SIDE)[0])
        times: dict[str, list[float]] = {name: [] for name in paths}
        feats: dict[str, list[np.ndarray]] = {}
        for path in paths.values():  # warm up
            with _assembly(path):
                backend.extract(images[0])
        for _ in range(args.repeats):
            for name, path in paths.items():
                feats[name] = []
                with _assembly(path):
                    for img in images:
                        backend._recent = []  # the network runs in every extraction
                        t = time.perf_counter()
                        feats[name].append(backend.extract(img).features)
                        times[name].append(time.perf_counter() - t)
        a, b = feats.values()
        same = all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        shape = " x ".join(str(v) for v in a[0].shape)
        for name in paths:
            print(f"| {zoom}x | {shape} | {name} | {np.median(times[name]):.3f} | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
