"""The verify path must never import torch or tvm (small RSS, fast start, smaller attack surface)."""

import subprocess
import sys

CODE = """
import sys
sys.path.insert(0, "tests")
from synthetic import fundus
import biometrics.cli, biometrics.service, segmentation.backends
from biometrics.pipeline import Pipeline
from matching import compare
t = Pipeline().extract(fundus(0)[0])
assert compare(t, t) > 0.9
bad = [m for m in ("torch", "tvm", "onnx") if m in sys.modules]
print("IMPORTED:" + ",".join(bad))
"""


def test_verify_path_imports_neither_torch_nor_tvm():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert "IMPORTED:\n" in out.stdout or out.stdout.strip() == "IMPORTED:", out.stdout
