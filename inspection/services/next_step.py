"""The single most useful next step for a project, from its state.

``next_step_get`` reads the project (images, strokes, ground truth, versions,
predictions, the line) and names one step with a link that does it, in the
order an engineer setting up a new part meets them: enough images, strokes for
every class, a Run, undoing a Run that made things worse, ground truth so rules
and versions can be judged, correcting where the model contradicts the ground
truth, the candidate, the most unsure blob, the line. The Images page shows it; the
API serves it (``GET /projects/{id}/next-step/``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from inspection.models import Image, Job, ModelVersion, Prediction, Project, Prompt
from inspection.selectors import model_candidate
from inspection.services.lifecycle import model_guard, prompts_count_describe
from inspection.services.training import GOOD_PARTS_MIN, TRAINABLE_KINDS

#: OK-labelled parts the rules need before they can be judged (overkill) and tuned
MIN_OK_LABELLED = 3
#: below this uncertainty the most unsure image is not worth a correction stroke
UNSURE_MIN = 0.02


@dataclass
class NextStep:
    """One step: ``code`` (stable, for clients), ``title`` (imperative, one line),
    ``detail`` (why), and the link that does it: ``href`` (a dashboard page) or
    ``action`` (``run``, ``deploy``, ``undo``, ``keep``: a button on the page)."""

    code: str
    title: str
    detail: str
    href: str | None = None
    action: str | None = None
    label: str = "Go"
    image: str | None = None
    model_version: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _name(im: Image) -> str:
    return im.original_name or str(im.id)


def _editor(project: Project, im: Image, **query) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
    return f"/projects/{project.id}/images/{im.id}/" + (f"?{q}" if q else "")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def next_step_get(*, project: Project) -> NextStep:
    """The most useful next step for ``project`` now (see the module docstring)."""
    images = list(Image.objects.filter(project=project).order_by("created_at", "id"))
    n = len(images)
    base = f"/projects/{project.id}/"
    if n < project.cold_start_min:
        more = project.cold_start_min - n
        return NextStep(
            code="upload",
            title=f"Upload {_plural(more, 'more image')}",
            detail=f"The project has {_plural(n, 'image')}; training needs at least "
            f"{project.cold_start_min} photos of the part.",
            href=base + "#upload",
            label="Upload",
        )

    labels = Counter(
        Prompt.objects.filter(
            image__project=project,
            deleted_at__isnull=True,
            kind__in=TRAINABLE_KINDS,
        ).values_list("label", flat=True)
    )
    by_id = {str(im.id): im for im in images}
    painted = set(
        Prompt.objects.filter(image__project=project, deleted_at__isnull=True)
        .values_list("image_id", flat=True)
        .distinct()
    )
    # good parts only: a backbone project with good parts marked OK and no defect
    # painted trains without strokes (services.training); its rules need an anomaly rule
    n_ok = sum(1 for im in images if im.verdict == "OK")
    good_parts_only = (
        project.backend == "backbone"
        and n_ok >= GOOD_PARTS_MIN
        and not any(labels.get(cls) for cls in project.class_names)
    )
    for cls in [] if good_parts_only else project.class_names:
        if not labels.get(cls):
            pick = next((im for im in images if im.verdict == "NG"), None) or images[0]
            return NextStep(
                code="paint_class",
                title=f"Paint a {cls} stroke on {_name(pick)}",
                detail=f"The model learns {cls} from strokes: brush over one {cls} on an "
                "image that shows it.",
                href=_editor(project, pick, label=cls),
                label="Open the image",
                image=str(pick.id),
            )
    if not labels.get("background") and not good_parts_only:
        pick = (
            next((im for im in images if im.verdict == "OK"), None)
            or next((im for im in images if im.id in painted), None)
            or images[0]
        )
        return NextStep(
            code="paint_background",
            title=f"Paint background on {_name(pick)}",
            detail="The model also needs to see what is not a defect: a few background "
            "strokes across the clean surface.",
            href=_editor(project, pick, label="background"),
            label="Open the image",
            image=str(pick.id),
        )

    if Job.objects.filter(
        project=project, kind=Job.Kind.TRAIN, state__in=Job.ACTIVE_STATES
    ).exists():
        return NextStep(
            code="wait",
            title="Wait for the Run to finish",
            detail="A training run is in progress; its progress shows on the run bar.",
        )
    if not ModelVersion.objects.filter(project=project).exists():
        return NextStep(
            code="run",
            title="Press Run",
            detail=(
                f"No defect is painted: the model learns what the {_plural(n_ok, 'good part')} "
                "marked OK look like, and flags what is unlike them (paint a defect class "
                "later to teach it)."
                if good_parts_only
                else "Every class has strokes: train a first model and predict every image."
            ),
            action="run",
            label="Run",
        )

    candidate = model_candidate(project=project)
    newest = candidate or project.deployed_model
    guard = model_guard(model_version=newest) if newest is not None else None
    if guard is not None:
        added = guard["prompts"]["added"]
        where = ", ".join(g["image_name"] for g in added) or "no image"
        prev = guard["baseline"]["number"]
        count = prompts_count_describe(guard["prompts"]["added_kinds"])
        return NextStep(
            code="undo_or_keep",
            title=f"v{newest.number} is worse than v{prev}: undo the labels added since, "
            f"or keep v{prev}",
            detail=guard["assessment"]["summary"] + f". Added since v{prev}: {count} (on {where}).",
            action="undo",
            label=f"Undo {count}" if guard["prompts"]["n_added"] else "Undo the changes",
            model_version=str(newest.id),
            extra={"previous": guard["baseline"], "prompts_added": added},
        )

    shown = candidate or project.deployed_model
    preds = {
        str(p.image_id): p
        for p in Prediction.objects.filter(model_version=shown, image__project=project).order_by(
            "created_at", "id"
        )
    }  # newest last: the dict keeps each image's newest
    n_ng = sum(1 for im in images if im.verdict == "NG")
    if good_parts_only and not _has_anomaly_rule(project):
        return NextStep(
            code="tune_anomaly",
            title="Tune the rules: an anomaly rule from the good parts",
            detail="No defect is painted, so only a rule on the anomaly score can judge a "
            "part NG. Tune on the Rules page proposes one just above the most unusual of "
            f"the {_plural(n_ok, 'good part')}; save it to judge the line by it.",
            href=base + "rules/",
            label="Rules",
        )
    if n_ok < MIN_OK_LABELLED:
        need = MIN_OK_LABELLED - n_ok
        unlabelled = [
            im
            for im in images
            if not im.verdict and (p := preds.get(str(im.id))) is not None and p.verdict == "OK"
        ] or [im for im in images if not im.verdict]
        pick = unlabelled[0] if unlabelled else images[0]
        return NextStep(
            code="mark_ok",
            title=f"Mark {_plural(need, 'more good part')} OK so rules can be tuned",
            detail=f"{_plural(n_ok, 'image')} {'carries' if n_ok == 1 else 'carry'} the ground truth OK. The Rules page "
            "judges and tunes rules on labelled parts: set Ground truth to OK on good parts "
            f"(the first: {_name(pick)}).",
            href=_editor(project, pick) + "#ground-truth",
            label="Open the image",
            image=str(pick.id),
        )
    if not any(im.mask for im in images) and not good_parts_only:
        pick = next((im for im in images if im.verdict == "NG"), None) or next(
            (im for im in images if (p := preds.get(str(im.id))) and p.verdict == "NG"), images[0]
        )
        return NextStep(
            code="upload_mask",
            title=f"Upload a ground-truth mask for {_name(pick)}",
            detail="With one mask (white where the defect is) the backtest and the "
            "comparison of versions measure how well defects are outlined (IoU), not "
            "only verdicts." + ("" if n_ng else " No image is labelled NG yet."),
            href=_editor(project, pick) + "#ground-truth",
            label="Open the image",
            image=str(pick.id),
        )

    # a good part the model judges NG: paint background on its largest blob
    for im in images:
        p = preds.get(str(im.id))
        if p is not None and im.verdict == "OK" and p.verdict == "NG" and p.blobs:
            blob = max(p.blobs, key=lambda b: b.get("area_px", 0))
            return _blob_step(
                project,
                im,
                blob,
                code="paint_overkill",
                title=f"Paint background on {_name(im)}'s largest blob",
                detail=f"{_name(im)} is a good part (ground truth OK) but v{shown.number} "
                f"judges it NG; a background stroke over the blob teaches it otherwise.",
            )
    # a defective part the model passes: paint the defect
    for im in images:
        p = preds.get(str(im.id))
        if p is not None and im.verdict == "NG" and p.verdict == "OK":
            first = project.class_names[0] if project.class_names else "defect"
            return NextStep(
                code="paint_escape",
                title=f"Paint the defect on {_name(im)}",
                detail=f"{_name(im)} is defective (ground truth NG) but v{shown.number} "
                "judges it OK: brush over the defect.",
                href=_editor(project, im, label=first),
                label="Open the image",
                image=str(im.id),
            )

    if candidate is not None and project.deployed_model_id is not None:
        return NextStep(
            code="deploy",
            title=f"Compare candidate v{candidate.number} with deployed "
            f"v{project.deployed_model.number}, then deploy it",
            detail="The line still uses the deployed version. The comparison shows both "
            "on the labelled images neither was trained on.",
            action="deploy",
            label=f"Compare and deploy v{candidate.number}",
            model_version=str(candidate.id),
        )

    unsure = sorted(
        (p for p in preds.values() if p.uncertainty is not None and p.blobs),
        key=lambda p: -p.uncertainty,
    )
    if unsure and unsure[0].uncertainty >= UNSURE_MIN:
        p = unsure[0]
        im = by_id.get(str(p.image_id))
        if im is not None:
            blob = max(p.blobs, key=lambda b: b.get("area_px", 0))
            return _blob_step(
                project,
                im,
                blob,
                code="paint_unsure",
                title=f"Check {_name(im)}'s largest unsure blob",
                detail=f"v{shown.number} is unsure about {100 * p.uncertainty:.0f} % of "
                f"{_name(im)}: paint background over the blob if it is clean surface, "
                "the defect class if it is a defect, then Run.",
            )
    if not project.inspections.exists():
        return NextStep(
            code="inspect",
            title="Send the line's first images",
            detail="The model and rules are set up: inspect new parts from the "
            "Inspections page or POST /projects/{id}/inspect/.",
            href=base + "inspections/",
            label="Inspections",
        )
    return NextStep(
        code="review",
        title="Review the line's unsure decisions",
        detail="Nothing is pending here: the review queue on the Inspections page "
        "walks the kept decisions nobody reviewed yet, most unsure first.",
        href=base + "inspections/?reviewed=false&image_kept=true",
        label="Review queue",
    )


def _has_anomaly_rule(project: Project) -> bool:
    """Whether the project's active rule set judges the anomaly score."""
    active = project.active_ruleset
    rules = (active.data or {}).get("rules", []) if active is not None else []
    # the stored JSON, not the parsed rule set: the rules engine (scipy) is not loaded
    # to draw the panel
    return any(isinstance(r, dict) and r.get("type") == "anomaly_score" for r in rules)


def _blob_step(project: Project, im: Image, blob: dict, *, code: str, title: str, detail: str):
    x0, y0, x1, y1 = (int(v) for v in blob.get("bbox") or (0, 0, im.width, im.height))
    return NextStep(
        code=code,
        title=title,
        detail=detail,
        href=_editor(project, im, label="background", focus=f"{x0},{y0},{x1},{y1}"),
        label="Open at the blob",
        image=str(im.id),
        extra={"bbox": [x0, y0, x1, y1], "area_px": blob.get("area_px")},
    )
