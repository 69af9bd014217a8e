"""Probability maps with square blobs, for the backtest and tuner tests."""

import numpy as np


def blob_image(*blobs, shape=(16, 16), n_classes=1):
    """(K+1, H, W) probabilities with square blobs (row, col, side, prob[, class])."""
    p = np.zeros((n_classes + 1, *shape), np.float32)
    for blob in blobs:
        r, c, side, prob, *k = blob
        p[(k[0] if k else 1), r : r + side, c : c + side] = prob
    p[0] = 1 - p[1:].sum(axis=0)
    return p


def random_blob_images(rng, n: int = 10, truth=lambda rng, i: "NG" if rng.random() < 0.5 else "OK"):
    """(probabilities, truths) of ``n`` 16x16 images with up to two random square blobs."""
    probs, truths = {}, {}
    for i in range(n):
        blobs = [
            (
                int(rng.integers(0, 10)),
                int(rng.integers(0, 10)),
                int(rng.integers(1, 6)),
                float(rng.uniform(0.1, 1)),
            )
            for _ in range(int(rng.integers(0, 3)))
        ]
        probs[str(i)] = blob_image(*blobs)
        truths[str(i)] = truth(rng, i)
    return probs, truths
