"""The agent stays light enough for a Raspberry Pi: no torch, no Django, no ultralytics."""

import subprocess
import sys

HEAVY = ("torch", "django", "ultralytics", "cv2", "rest_framework")


def test_the_agent_imports_none_of_the_heavy_packages():
    code = (
        "import sys, agent.cli, agent.loops, agent.detector, agent.vector, anki_vector, onnxruntime; "
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
