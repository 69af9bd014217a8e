"""Browser test of a logged decision's pixels: the decision page draws the
masks the server recomputes from the kept image, with a switch to hide them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.dashboard.browser_helpers import expect_text

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _part(seed: int, defect: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal(170, 6, (64, 96, 3)), 0, 255).astype(np.uint8)
    if defect:
        yy, xx = np.mgrid[:64, :96]
        rgb[(yy - 30) ** 2 + (xx - 50) ** 2 <= 64] = 40
    return rgb


def test_a_logged_decision_shows_its_pixels(
    live_server, page, shot, login, make_user, eager_jobs, tmp_path
):
    from inspection.models import ModelVersion, Project
    from inspection.services.inspections import inspection_run
    from inspection.services.projects import project_create
    from inspection.storage import bytes_save
    from prompting.features import backend_create
    from prompting.images import png_encode
    from prompting.learner import TrainingImage, learner_train

    owner = make_user("pia")
    project = project_create(user=owner, name="Discs", classes=["scratch"])
    images = []
    for seed in range(3):
        rgb = _part(seed, True)
        labels = np.full(rgb.shape[:2], -1, np.int16)
        labels[26:34, 46:54] = 1
        labels[2:8, :] = 0
        labels[56:62, :] = 0
        images.append(TrainingImage(f"t{seed}", rgb, labels))
    learner = learner_train(
        images, classes=["scratch"], backend=backend_create("classic"), steps=100
    ).learner
    path = tmp_path / "m1.npz"
    learner.save(path)
    name = bytes_save(f"projects/{project.id}/models/m1.npz", path.read_bytes())
    mv = ModelVersion.objects.create(
        project=project, number=1, backend="classic", classes=["scratch"], artifact=name
    )
    Project.objects.filter(id=project.id).update(deployed_model=mv, keep_inspection_images="all")
    project.refresh_from_db()
    ins = inspection_run(project=project, data=png_encode(_part(9, True)), filename="disc.png")
    assert ins.verdict == "NG" and ins.image_file.name

    login(page, live_server.url, "pia")
    page.goto(f"{live_server.url}/projects/{project.pk}/inspections/{ins.pk}/")
    page.wait_for_selector("[data-testid=decision-pixels]", state="attached")
    expect_text(page, "[data-testid=pixels-note]", "pixels: scratch")
    assert "differ from the log" not in page.inner_text("[data-testid=pixels-note]")
    # the layer covers the disc: the overlay's alpha is set there, not in the corner
    alpha = page.evaluate(
        """() => new Promise((done) => {
          const img = new Image();
          img.onload = () => {
            const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
            const ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);
            done([ctx.getImageData(50, 30, 1, 1).data[3], ctx.getImageData(2, 2, 1, 1).data[3]]);
          };
          img.src = document.querySelector("[data-testid=decision-pixels]").getAttribute("href");
        })"""
    )
    assert alpha[0] > 0 and alpha[1] == 0, alpha
    shot(page, "19-decision-pixels")
    page.click("[data-testid=pixels-toggle]")
    assert page.eval_on_selector("[data-testid=decision-pixels]", "e => e.style.display") == "none"
