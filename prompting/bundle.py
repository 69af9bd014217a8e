"""Inspection bundles: a model and its rules in one file, to decide off the server.

A bundle is a zip of exactly three members:

- ``model.npz``: the learner artifact (:class:`prompting.learner.Learner`);
- ``rules.json``: the rule set (validated by :func:`prompting.rules.ruleset_validate`);
- ``manifest.json``: format name and version, the sha256 of the two others,
  the classes, ``px_per_mm``, the input check (``input_check``: mode and
  margin, see :mod:`prompting.inputcheck`; absent in older bundles: flag at the
  default margin) and free-form provenance (project, versions).

:func:`bundle_read` checks the format, the member names and sizes (before
anything is decompressed), both checksums, the model artifact (its own header
and checksum) and the rules, and that model and rules name the same classes, so
a bundle that loads decides exactly as the server that wrote it. Any problem
raises :class:`BundleError` saying what is wrong.

Example::

    data = bundle_build(model_bytes=Path("model.npz").read_bytes(), rules=rules_dict,
                        px_per_mm=10.0, provenance={"project": "Line 4"})
    bundle = bundle_read(data)
    inspect_image(rgb8, learner=bundle.learner, backend=..., ruleset=bundle.ruleset,
                  px_per_mm=bundle.px_per_mm)
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompting.errors import ArtifactError, BundleError, RuleSetError
from prompting.inputcheck import DEFAULT_MARGIN, MAX_MARGIN

BUNDLE_FORMAT_NAME = "prompting.bundle"
BUNDLE_FORMAT_VERSION = 1
MEMBERS = ("manifest.json", "model.npz", "rules.json")
#: a member larger than this (uncompressed) is refused before it is read
MAX_MEMBER_BYTES = 256 * 2**20
MAX_MANIFEST_BYTES = 1 * 2**20


@dataclass
class Bundle:
    """A read bundle: ``learner`` and ``ruleset`` ready for ``inspect_image``."""

    learner: Any
    ruleset: Any
    px_per_mm: float | None
    manifest: dict[str, Any] = field(default_factory=dict)
    #: the input check the server applied: ``inspect_image(input_mode=, input_margin=)``
    input_mode: str = "flag"
    input_margin: float = DEFAULT_MARGIN


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_build(
    *,
    model_bytes: bytes,
    rules: dict[str, Any],
    px_per_mm: float | None = None,
    provenance: dict[str, Any] | None = None,
    input_mode: str = "flag",
    input_margin: float = DEFAULT_MARGIN,
) -> bytes:
    """The bundle's bytes (a zip) for a model artifact and a rule set.

    ``model_bytes``: the ``.npz`` artifact as saved by ``Learner.save``;
    ``rules``: a rule-set dict. Both are checked as :func:`bundle_read` checks
    them, so a bundle that was built can be read.
    """
    # deferred: scikit-image and scipy load on first use
    from prompting.learner import Learner
    from prompting.rules import ruleset_check_context, ruleset_validate

    learner = Learner.from_bytes(model_bytes, source="model")
    try:
        ruleset = ruleset_validate(rules)
        ruleset_check_context(ruleset, classes=learner.classes, px_per_mm=px_per_mm)
        validated = ruleset.to_dict()
    except RuleSetError as exc:
        raise BundleError(f"the rules can't be bundled: {exc}") from None
    rules_bytes = json.dumps(validated, indent=1, sort_keys=True).encode()
    _input_check_check({"mode": input_mode, "margin": input_margin}, "the input check")
    manifest = {
        "format": BUNDLE_FORMAT_NAME,
        "format_version": BUNDLE_FORMAT_VERSION,
        "sha256": {"model.npz": _sha256(model_bytes), "rules.json": _sha256(rules_bytes)},
        "classes": list(learner.classes),
        "backend": {"name": learner.backend_name, "options": learner.backend_options},
        "px_per_mm": px_per_mm,
        "input_check": {"mode": input_mode, "margin": float(input_margin)},
        "provenance": provenance or {},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        zf.writestr("model.npz", model_bytes)
        zf.writestr("rules.json", rules_bytes)
    return buf.getvalue()


def bundle_read(source: bytes | str | Path) -> Bundle:
    """Open and verify a bundle (its bytes or a path); raises BundleError."""
    # deferred: scikit-image and scipy load on first use
    from prompting.learner import Learner
    from prompting.rules import ruleset_check_context, ruleset_validate

    name = "bundle"
    if isinstance(source, (str, Path)):
        name = str(source)
        try:
            source = Path(source).read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read bundle {name}: {exc.strerror or exc}") from None
    try:
        zf = zipfile.ZipFile(io.BytesIO(source))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise BundleError(f"{name} is not an inspection bundle (not a zip archive)") from None
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        if sorted(infos) != sorted(MEMBERS):
            raise BundleError(
                f"{name} is not an inspection bundle: it holds {sorted(infos)[:10]}, "
                f"expected exactly {list(MEMBERS)}"
            )
        for member, info in infos.items():
            limit = MAX_MANIFEST_BYTES if member == "manifest.json" else MAX_MEMBER_BYTES
            if info.file_size > limit:
                raise BundleError(
                    f"{name}: {member} is {info.file_size} bytes uncompressed; the limit is {limit}"
                )
        try:
            raw = {m: zf.read(m) for m in MEMBERS}
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise BundleError(f"{name} is corrupt or truncated ({exc})") from None
    try:
        manifest = json.loads(raw["manifest.json"].decode())
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{name}: manifest.json is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT_NAME:
        raise BundleError(f"{name} is not an inspection bundle (manifest format)")
    if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{name} has bundle format version {manifest.get('format_version')!r}; this engine "
            f"reads version {BUNDLE_FORMAT_VERSION}: export it again"
        )
    sums = manifest.get("sha256") if isinstance(manifest.get("sha256"), dict) else {}
    for member in ("model.npz", "rules.json"):
        if sums.get(member) != _sha256(raw[member]):
            raise BundleError(
                f"{name}: {member} failed its sha256 checksum: the bundle is corrupt or was modified"
            )
    try:
        learner = Learner.from_bytes(raw["model.npz"], source=f"{name}: model.npz")
    except ArtifactError as exc:
        raise BundleError(str(exc)) from None
    if list(manifest.get("classes") or []) != list(learner.classes):
        raise BundleError(f"{name}: the manifest's classes do not match the model's")
    px = manifest.get("px_per_mm")
    if px is not None and (isinstance(px, bool) or not isinstance(px, (int, float)) or px <= 0):
        raise BundleError(f"{name}: px_per_mm must be a positive number or null, got {px!r}")
    check = manifest.get("input_check", {"mode": "flag", "margin": DEFAULT_MARGIN})
    _input_check_check(check, f"{name}: manifest input_check")
    try:
        ruleset = ruleset_validate(json.loads(raw["rules.json"].decode()))
        ruleset_check_context(ruleset, classes=learner.classes, px_per_mm=px)
    except (UnicodeDecodeError, ValueError):
        raise BundleError(f"{name}: rules.json is not valid JSON") from None
    except RuleSetError as exc:
        raise BundleError(f"{name}: rules.json: {exc}") from None
    return Bundle(
        learner=learner,
        ruleset=ruleset,
        px_per_mm=px,
        manifest=manifest,
        input_mode=check["mode"],
        input_margin=float(check["margin"]),
    )


def _input_check_check(check: Any, what: str) -> None:
    # deferred: scipy loads on first use
    from prompting.pipeline import INPUT_CHECK_MODES

    mode = check.get("mode") if isinstance(check, dict) else None
    margin = check.get("margin") if isinstance(check, dict) else None
    if mode not in INPUT_CHECK_MODES:
        raise BundleError(
            f"{what}: mode must be one of {', '.join(INPUT_CHECK_MODES)}, got {mode!r}"
        )
    if (
        isinstance(margin, bool)
        or not isinstance(margin, (int, float))
        or not 0 <= margin <= MAX_MARGIN
    ):
        raise BundleError(f"{what}: margin must be a number 0..{MAX_MARGIN}, got {margin!r}")
