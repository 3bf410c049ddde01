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


def import_graph(package_dirs: list[Path]) -> dict[str, set[str]]:
    """Module → the project modules it imports, at top level or inside functions (lazy imports count too).

    A submodule importing its own parent package is not an edge (Python runs the parent's ``__init__``
    first anyway); ``from pkg import name`` points at ``pkg.name`` when that is a module.
    """
    import ast

    modules: dict[str, Path] = {}
    for top in package_dirs:
        for path in top.rglob("*.py"):
            parts = list(path.relative_to(top.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_reports_a_lazy_import_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from pkg import a\n")
    assert find_cycle(import_graph([pkg])) == ["pkg.a", "pkg.b", "pkg.a"]


def test_project_imports_have_no_cycles():
    """Imports point one way (DESIGN §1): e.g. bench never imports the CLI that imports it."""
    graph = import_graph([REPO / "crcm_robotics", REPO / "distill"])
    assert "crcm_robotics.runtime.device" in graph["crcm_robotics.runtime.export"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"
