"""Inspection bundles: model + rules + calibration in one verified file, and the
command line deciding from one exactly as the engine does from its parts."""

from __future__ import annotations

import copy
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from prompting.__main__ import main
from prompting.bundle import MEMBERS, bundle_build, bundle_read
from prompting.errors import BundleError
from prompting.features.classic import ClassicBackend
from prompting.learner import TrainingImage, learner_train
from prompting.pipeline import inspect_image
from prompting.rules import DEFAULT_RULESET, ruleset_validate


def _scratch(seed: int, row: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 8, (48, 64)).clip(0, 255)
    img[row : row + 2, 8:56] = 190
    labels = np.full((48, 64), -1, np.int16)
    labels[row, 12:40] = 1
    labels[6, 4:60] = 0
    labels[42, 4:60] = 0
    return np.repeat(img[..., None], 3, axis=2).astype(np.uint8), labels


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    backend = ClassicBackend(sigmas=(1, 2, 4))
    images = [TrainingImage(f"im{i}", *_scratch(i, 15 + 6 * i)) for i in range(3)]
    learner = learner_train(images, classes=["scratch"], backend=backend, seed=0, steps=200).learner
    path = tmp_path_factory.mktemp("m") / "model.npz"
    learner.save(path)
    return path.read_bytes()


def _rules(**default):
    rules = copy.deepcopy(DEFAULT_RULESET)
    rules["default"].update(default)
    return rules


def _rezip(data: bytes, **replace: bytes | None) -> bytes:
    """The bundle with members replaced (bytes) or dropped (None), others kept."""
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for name in src.namelist():
            if name in replace:
                if replace[name] is not None:
                    out.writestr(name, replace[name])
            else:
                out.writestr(name, src.read(name))
        for name, value in replace.items():
            if name not in src.namelist() and value is not None:
                out.writestr(name, value)
    return buf.getvalue()


def test_a_bundle_round_trips_and_decides_like_its_parts(model_bytes):
    from prompting.learner import Learner

    rules = _rules(threshold=0.6)
    data = bundle_build(
        model_bytes=model_bytes, rules=rules, px_per_mm=12.5, provenance={"project": "Line 4"}
    )
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == sorted(MEMBERS)
    bundle = bundle_read(data)
    assert bundle.px_per_mm == 12.5 and bundle.manifest["provenance"] == {"project": "Line 4"}
    assert bundle.manifest["classes"] == ["scratch"]
    assert bundle.ruleset.to_dict() == ruleset_validate(rules).to_dict()
    rgb, _ = _scratch(9, 30)
    backend = ClassicBackend(**bundle.learner.backend_options)
    from_bundle = inspect_image(
        rgb, learner=bundle.learner, backend=backend, ruleset=bundle.ruleset, px_per_mm=12.5
    )
    direct = inspect_image(
        rgb,
        learner=Learner.from_bytes(model_bytes),
        backend=backend,
        ruleset=ruleset_validate(rules),
        px_per_mm=12.5,
    )
    a, b = from_bundle.decision.to_dict(), direct.decision.to_dict()
    a.pop("timings"), b.pop("timings")
    assert a == b and a["verdict"] == "NG"
    assert np.array_equal(from_bundle.probabilities, direct.probabilities)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d[: len(d) // 2], "not a zip|corrupt"),
        (lambda d: b"PK" + b"\0" * 50, "not a zip"),
        (lambda d: _rezip(d, **{"rules.json": None}), "expected exactly"),
        (lambda d: _rezip(d, **{"../evil.sh": b"rm -rf /"}), "expected exactly"),
        (lambda d: _rezip(d, **{"rules.json": b'{"default": {"threshold": 0.1}}'}), "sha256"),
        (lambda d: _rezip(d, **{"model.npz": b"PK not really"}), "sha256"),
        (lambda d: _rezip(d, **{"manifest.json": b"[1, 2"}), "not valid JSON"),
        (lambda d: _rezip(d, **{"manifest.json": b'{"format": "other"}'}), "manifest format"),
        (
            lambda d: _rezip(
                d,
                **{
                    "manifest.json": json.dumps(
                        {"format": "prompting.bundle", "format_version": 9}
                    ).encode()
                },
            ),
            "format version 9",
        ),
    ],
)
def test_a_broken_or_tampered_bundle_says_what_is_wrong(model_bytes, mangle, message):
    data = bundle_build(model_bytes=model_bytes, rules=_rules())
    with pytest.raises(BundleError, match=message):
        bundle_read(mangle(data))


def _manifest_edit(data: bytes, **changes) -> bytes:
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    manifest.update(changes)
    return _rezip(data, **{"manifest.json": json.dumps(manifest).encode()})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": ["dent"]}, "classes do not match"),
        ({"px_per_mm": -3}, "px_per_mm must be a positive number"),
        ({"px_per_mm": True}, "px_per_mm must be a positive number"),
        ({"input_check": {"mode": "strict", "margin": 1}}, "input_check: mode must be one of"),
        ({"input_check": {"mode": "ng", "margin": 99}}, "input_check: margin must be"),
        ({"input_check": "ng"}, "input_check: mode must be one of"),
    ],
)
def test_an_inconsistent_manifest_is_refused(model_bytes, changes, message):
    data = bundle_build(model_bytes=model_bytes, rules=_rules(), px_per_mm=10.0)
    with pytest.raises(BundleError, match=message):
        bundle_read(_manifest_edit(data, **changes))


def test_rules_must_fit_the_model_and_the_calibration(model_bytes):
    foreign = _rules()
    foreign["rules"][0]["class"] = "dent"
    with pytest.raises(BundleError, match="unknown class 'dent'"):
        bundle_build(model_bytes=model_bytes, rules=foreign)
    in_mm = _rules()
    in_mm["rules"][0].pop("min_area_px", None)
    in_mm["rules"][0]["min_area_mm2"] = 0.5
    with pytest.raises(BundleError, match="needs px_per_mm"):
        bundle_build(model_bytes=model_bytes, rules=in_mm, px_per_mm=None)
    assert bundle_read(bundle_build(model_bytes=model_bytes, rules=in_mm, px_per_mm=4.0))


def test_an_oversized_member_is_refused_before_it_is_read(model_bytes, monkeypatch):
    import prompting.bundle as bundle_module

    data = bundle_build(model_bytes=model_bytes, rules=_rules())
    monkeypatch.setattr(bundle_module, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(BundleError, match="model.npz is .* bytes uncompressed; the limit is 1000"):
        bundle_read(data)


def test_the_command_line_inspects_with_a_bundle(model_bytes, tmp_path, capsys):
    path = tmp_path / "line.zip"
    path.write_bytes(bundle_build(model_bytes=model_bytes, rules=_rules(threshold=0.6)))
    images = tmp_path / "images"
    images.mkdir()
    for i, row in enumerate((12, 30)):
        Image.fromarray(_scratch(20 + i, row)[0]).save(images / f"part{i}.png")
    model = tmp_path / "model.npz"
    model.write_bytes(model_bytes)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(_rules(threshold=0.6)))
    assert main(["-q", "inspect", "--bundle", str(path), "--images", str(images)]) == 0
    from_bundle = json.loads(capsys.readouterr().out)
    assert (
        main(
            ["-q", "inspect", "--model", str(model), "--rules", str(rules), "--images", str(images)]
        )
        == 0
    )
    from_parts = json.loads(capsys.readouterr().out)
    for a, b in zip(from_bundle, from_parts, strict=True):
        for key in ("timings_ms", "timings"):
            a.pop(key), b.pop(key)
    assert from_bundle == from_parts and len(from_bundle) == 2
    assert (
        main(
            ["-q", "inspect", "--bundle", str(path), "--model", str(model), "--images", str(images)]
        )
        == 2
    )
    assert "drop --model" in capsys.readouterr().err
    assert main(["-q", "inspect", "--images", str(images)]) == 2
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(_rezip(path.read_bytes(), **{"rules.json": b"{}"}))
    assert main(["-q", "inspect", "--bundle", str(tampered), "--images", str(images)]) == 2
    assert "sha256" in capsys.readouterr().err


def test_the_input_check_travels_with_the_bundle(model_bytes):
    data = bundle_build(model_bytes=model_bytes, rules=_rules(), input_mode="ng", input_margin=1.5)
    bundle = bundle_read(data)
    assert (bundle.input_mode, bundle.input_margin) == ("ng", 1.5)
    assert bundle.learner.info["input_ranges"]["measures"]  # the ranges are in the model
    # a bundle written before the input check: flag at the default tolerance
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    del manifest["input_check"]
    old = bundle_read(_rezip(data, **{"manifest.json": json.dumps(manifest).encode()}))
    assert (old.input_mode, old.input_margin) == ("flag", 0.75)
    with pytest.raises(BundleError, match="input check: mode"):
        bundle_build(model_bytes=model_bytes, rules=_rules(), input_mode="strict")
