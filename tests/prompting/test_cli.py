import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from prompting.__main__ import main


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        img = rng.normal(100, 6, (40, 50)).clip(0, 255)
        img[18:20, 5:45] = 200
        Image.fromarray(img.astype(np.uint8)).save(tmp_path / f"p{i}.png")
    prompts = {
        "classes": ["scratch"],
        "images": {
            f"p{i}.png": [
                {
                    "kind": "stroke",
                    "label": "scratch",
                    "points": [[8, 18.5], [40, 18.5]],
                    "radius": 1,
                },
                {"kind": "stroke", "label": "background", "points": [[3, 5], [45, 5]], "radius": 2},
                {
                    "kind": "stroke",
                    "label": "background",
                    "points": [[3, 33], [45, 33]],
                    "radius": 2,
                },
            ]
            for i in range(2)
        },
    }
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    return tmp_path


def test_help_runs_as_module():
    out = subprocess.run(
        [sys.executable, "-m", "prompting", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in out.stdout and "inspect" in out.stdout and '"images"' in out.stdout


def test_train_inspect_segment(folder, capsys):
    model = folder / "model.npz"
    rc = main(
        [
            "-q",
            "train",
            "--images",
            str(folder),
            "--prompts",
            str(folder / "prompts.json"),
            "--backend",
            "classic",
            "--out",
            str(model),
        ]
    )
    assert rc == 0 and model.is_file()
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"] == ["scratch"] and summary["pixels_per_class"]["scratch"] > 0

    rc = main(
        [
            "-q",
            "segment",
            "--model",
            str(model),
            "--image",
            str(folder / "p0.png"),
            "--out",
            str(folder / "seg.png"),
        ]
    )
    assert rc == 0
    seg = np.array(Image.open(folder / "seg.png"))
    assert seg.shape == (40, 50) and seg[18, 25] == 1 and seg[5, 25] == 0

    for fmt in ("json", "csv"):
        out = folder / f"results.{fmt}"
        rc = main(
            [
                "-q",
                "inspect",
                "--model",
                str(model),
                "--images",
                str(folder),
                "--format",
                fmt,
                "--out",
                str(out),
            ]
        )
        assert rc == 0
        text = out.read_text()
        assert "p0.png" in text and "p1.png" in text
    records = json.loads((folder / "results.json").read_text())
    assert {r["verdict"] for r in records} <= {"OK", "NG"}


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--images", "{f}", "--prompts", "{f}/missing.json", "--out", "{f}/m.npz"],
        [
            "train",
            "--images",
            "{f}",
            "--prompts",
            "{f}/prompts.json",
            "--classes",
            "dent",
            "--out",
            "{f}/m.npz",
        ],
        ["segment", "--model", "{f}/p0.png", "--image", "{f}/p0.png", "--out", "{f}/x.png"],
    ],
)
def test_bad_input_exit_2(folder, args, capsys):
    rc = main(["-q", *[a.format(f=folder) for a in args]])
    assert rc == 2
    assert "error:" in capsys.readouterr().err


def test_train_at_a_working_resolution(folder, capsys):
    """--work-max-side: the fixture's parts taken by a camera with 4x the resolution
    (160 x 200); the model learns at 100 px on the longer side and segments the whole
    160 x 200 image."""
    big = folder / "big"
    big.mkdir()
    for name in ("p0.png", "p1.png"):
        Image.open(folder / name).resize((200, 160), Image.Resampling.NEAREST).save(big / name)
    spec = json.loads((folder / "prompts.json").read_text())
    for strokes in spec["images"].values():
        for st in strokes:
            st["points"] = [[4 * x + 1.5, 4 * y + 1.5] for x, y in st["points"]]
            st["radius"] *= 4
    (big / "prompts.json").write_text(json.dumps(spec))
    model = big / "small.npz"
    args = ["-q", "train", "--images", str(big), "--prompts", str(big / "prompts.json")]
    args += ["--out", str(model), "--work-max-side", "100"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["work_max_side"] == 100
    out = big / "seg.png"
    assert (
        main(
            ["-q", "segment", "--model", str(model), "--image", str(big / "p1.png")]
            + ["--out", str(out)]
        )
        == 0
    )
    seg = np.array(Image.open(out))
    assert seg.shape == (160, 200) and seg[74, 100] == 1 and seg[20, 100] == 0


def test_train_refuses_a_working_resolution_outside_the_range(folder, capsys):
    args = ["-q", "train", "--images", str(folder), "--prompts", str(folder / "prompts.json")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(folder / "m.npz"), "--work-max-side", "10"])
    assert exit_info.value.code == 2
    assert "--work-max-side: 10: 0 (every image whole) or 64 to 8192 px" in capsys.readouterr().err
    assert not (folder / "m.npz").exists()
