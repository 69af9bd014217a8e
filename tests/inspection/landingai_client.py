"""A line PC's code, run with the real landingai SDK in its own virtualenv
(.venv-landingai: it pins numpy<2). Not a test module: the station tests and
the station benchmark run it as a subprocess.

    .venv-landingai/bin/python tests/inspection/landingai_client.py HOST PORT IMAGE OUT_DIR \
        [--format PNG|JPEG] [--repeat N] [--station S] [--part P]

For each prediction of the first call it writes ``<OUT_DIR>/<labelName>.npy``
(the mask decoded by the SDK's own ``decode_bitmap_rle``) and a JSON summary
to stdout: the bytes the SDK sent (``sent.bin``), the predictions, and the
latency of every call in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("image")
    ap.add_argument("out")
    ap.add_argument("--format", default="PNG", choices=["PNG", "JPEG"])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--station", default="")
    ap.add_argument("--part", default="")
    args = ap.parse_args()
    os.environ["DEFAULT_IMAGE_SERIALIZATION_FORMAT"] = args.format

    import numpy as np
    import PIL.Image
    from landingai.common import InferenceMetadata, decode_bitmap_rle
    from landingai.predict import EdgePredictor
    from landingai.utils import serialize_image

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image = PIL.Image.open(args.image).convert("RGB")
    (out / "sent.bin").write_bytes(serialize_image(image))
    metadata = None
    if args.station or args.part:
        # the SDK's fields are set by their aliases (its own docstring's names are ignored)
        metadata = InferenceMetadata(
            inspectionStationId=args.station,
            imageId=args.part,
            locationId="hall-2",
            captureTimestamp="2026-12-02T10:00:00",
        )
    predictor = EdgePredictor(args.host, args.port)
    latencies = []
    first = None
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        predictions = predictor.predict(image, metadata=metadata)
        latencies.append((time.perf_counter() - t0) * 1000)
        if first is None:
            first = predictions
    summary = []
    for p in first:
        flat = decode_bitmap_rle(p.encoded_mask, p.encoding_map)
        mask = np.array(flat, dtype=np.uint8).reshape(p.mask_shape)
        np.save(out / f"{p.label_name}.npy", mask)
        assert (mask == p.decoded_boolean_mask).all()
        summary.append(
            {
                "type": type(p).__name__,
                "id": p.id,
                "label_name": p.label_name,
                "label_index": p.label_index,
                "score": p.score,
                "mask_shape": list(p.mask_shape),
                "pixels": int(mask.sum()),
            }
        )
    json.dump({"predictions": summary, "latency_ms": latencies}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
