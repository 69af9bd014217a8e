import numpy as np
import pytest

from prompting.overlay import render_overlay
from prompting.rules import rules_apply, ruleset_validate

RED, GREEN = (255, 0, 0), (0, 255, 0)


def _scene():
    img = np.full((9, 9, 3), 100, np.uint8)
    labels = np.zeros((9, 9), np.uint8)
    labels[2:7, 2:7] = 1  # 5x5 square: inner 3x3 is interior
    return img, labels


def test_blend_interior_and_outline():
    img, labels = _scene()
    out = render_overlay(img, labels, colours=[RED], alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert out[4, 4].tolist() == [178, 50, 50]  # 0.5 * 100 + 0.5 * colour
    assert out[2, 2].tolist() == list(RED) and out[6, 4].tolist() == list(RED)  # outline
    assert out[0, 0].tolist() == [100, 100, 100]
    assert (img == 100).all()  # input untouched


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, [100, 100, 100]), (1.0, [0, 255, 0])])
def test_alpha_bounds(alpha, expected):
    img, labels = _scene()
    assert render_overlay(img, labels, colours=[GREEN], alpha=alpha)[4, 4].tolist() == expected


def test_colours_by_class_and_cycling():
    img = np.zeros((1, 9, 3), np.uint8)
    labels = np.array([[1, 0, 2, 0, 3, 0, 0, 0, 0]], np.uint8)
    out = render_overlay(img, labels, colours=[RED, GREEN], alpha=1.0)
    assert out[0, 0].tolist() == list(RED)
    assert out[0, 2].tolist() == list(GREEN)
    assert out[0, 4].tolist() == list(RED)  # class 3 cycles back to the first colour


def test_blob_boxes_drawn_around_blobs():
    probs = np.zeros((2, 9, 9), np.float32)
    probs[1, 4, 4] = 0.9
    probs[0] = 1 - probs[1]
    decision = rules_apply(probs, classes=["dot"], ruleset=ruleset_validate({}))
    img = np.zeros((9, 9, 3), np.uint8)
    out = render_overlay(img, decision.label_map, colours=[RED], alpha=0.5, blobs=decision.blobs)
    assert out[4, 4].tolist() == list(RED)  # the blob (its own outline)
    ring = [(3, 3), (3, 4), (3, 5), (4, 3), (4, 5), (5, 3), (5, 4), (5, 5)]
    assert all(out[r, c].tolist() == list(RED) for r, c in ring)
    assert out[2, 2].tolist() == [0, 0, 0]
    # dict form (Decision.to_dict) and blobs on the image edge work too
    edge = [{"bbox": [0, 0, 1, 1], "class_name": "dot"}]
    out = render_overlay(
        img, np.zeros((9, 9), np.uint8), colours=[GREEN], blobs=edge, classes=["dot"]
    )
    assert out[1, 0].tolist() == list(GREEN) and out[0, 1].tolist() == list(GREEN)


@pytest.mark.parametrize(
    ("img", "labels", "kwargs"),
    [
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), {}),
        (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), {}),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8), {}),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), {"alpha": 1.5}),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), {"colours": []}),
    ],
)
def test_bad_inputs(img, labels, kwargs):
    with pytest.raises(ValueError):
        render_overlay(img, labels, **kwargs)
