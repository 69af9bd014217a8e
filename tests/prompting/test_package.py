"""The engine stands alone: importing it pulls in no Django."""

import subprocess
import sys


def test_import_prompting_loads_no_django() -> None:
    code = (
        "import sys, prompting, prompting.images, prompting.prompts, prompting.rules, "
        "prompting.backtest, prompting.learner, prompting.pipeline, prompting.features; "
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
