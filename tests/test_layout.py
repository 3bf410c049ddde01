"""Repository layout rules (DESIGN §1): no importable `datasets`, a light runtime import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_datasets_folder_is_never_a_package():
    assert (REPO / "datasets").is_dir()
    assert not (REPO / "datasets" / "__init__.py").exists(), "datasets/ would shadow HuggingFace `datasets`"


def test_import_datasets_does_not_resolve_to_this_repo(tmp_path):
    probe = (
        "import importlib.util, json; s = importlib.util.find_spec('datasets'); "
        "print(json.dumps(None if s is None else {'origin': s.origin, "
        "'locations': list(s.submodule_search_locations or [])}))"
    )
    # installed (editable) environment, from a neutral directory: the repo exposes no `datasets`
    found = json.loads(run_python(probe, tmp_path))
    if found is not None:
        assert not str(found["origin"] or "").startswith(str(REPO)), found
        assert not any(p.startswith(str(REPO)) for p in found["locations"]), found

    # from the repo root (sys.path[0] is the repo): a real `datasets` package later on the path still wins,
    # because datasets/ without __init__.py is at most a namespace portion
    fake = tmp_path / "site" / "datasets"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("ORIGIN = 'installed'\n")
    code = (
        f"import sys; sys.path.append({str(tmp_path / 'site')!r}); "
        "import datasets; print(getattr(datasets, 'ORIGIN', 'repo'))"
    )
    assert run_python(code, REPO) == "installed"


def test_runtime_import_needs_no_ros_onnx_tensorrt_or_hydra(tmp_path):
    code = (
        "import sys, json; import crcm_robotics, crcm_robotics.data, crcm_robotics.config; "
        "heavy = ('rclpy', 'onnxruntime', 'tensorrt', 'torch_tensorrt', 'hydra', 'omegaconf'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))"
    )
    assert json.loads(run_python(code, tmp_path)) == []
