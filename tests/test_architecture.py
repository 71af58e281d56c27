"""The layout's rules, checked on the source (docs/ARCHITECTURE.md states them for people).

- Layer order: a stage imports only stages at or below its own level (``LAYERS``), top-level and
  function-local imports alike.
- No import cycles between modules.
- No module imports another stage's method sub-package (``tuning.preference``, ``evaluation.embedding``, ...);
  what two stages share lives at stage level, in ``model_clients`` or in ``common``. Pipelines compose the
  methods' components and may import them.
- Logic never imports kfp: only ``component.py`` modules (the thin KFP wrappers) do.
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {"components": "tunekit.components", "pipelines": "tunekit.pipelines"}

#: Who may import whom: each stage may import the stages before it (and itself), never one after it.
LAYERS = [
    "common",
    "model_clients",
    "data_validation",
    "teacher_labelling",
    "rationale_extraction",
    "tuning",
    "deployment",
    "evaluation",
    "retraining",
    "reporting",
    "pipelines",
]
#: Stages with one sub-package per method.
METHOD_STAGES = ("tuning", "evaluation")


def _modules() -> dict[str, str]:
    found = {}
    for folder, package in PACKAGES.items():
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(directory, name), os.path.join(ROOT, folder))
                parts = rel[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                found[".".join([package, *parts])] = os.path.join(directory, name)
    return found


MODULES = _modules()


def _imports(module: str, path: str) -> set[str]:
    """Every tunekit module ``module`` imports, at any depth of its code."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    is_package = path.endswith("__init__.py")
    targets = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _stage(module: str) -> str:
    parts = module.split(".")
    if parts[1] == "pipelines":
        return "pipelines"
    return parts[2] if len(parts) > 2 else ""


def _method_package(module: str) -> str | None:
    """``tunekit.components.tuning.preference`` for any module inside that sub-package, else None."""
    parts = module.split(".")
    if parts[1] == "components" and len(parts) > 3 and parts[2] in METHOD_STAGES:
        candidate = ".".join(parts[:4])
        if os.path.isdir(os.path.join(ROOT, "components", parts[2], parts[3])):
            return candidate
    return None


def test_every_stage_is_in_the_layer_order():
    stages = {_stage(module) for module in MODULES} - {""}
    assert stages <= set(LAYERS), f"add {sorted(stages - set(LAYERS))} to LAYERS and docs/ARCHITECTURE.md"


def test_stages_import_only_stages_below_them():
    wrong = []
    for module, targets in GRAPH.items():
        stage = _stage(module)
        if not stage:
            continue
        for target in targets:
            other = _stage(target)
            if other and LAYERS.index(other) > LAYERS.index(stage):
                wrong.append(f"{module} -> {target} ({stage} may not import {other})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_module_reaches_into_another_stages_method_package():
    wrong = []
    for module, targets in GRAPH.items():
        if _stage(module) == "pipelines":
            continue
        for target in targets:
            package = _method_package(target)
            if package and _stage(target) != _stage(module):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_only_component_modules_import_kfp():
    wrong = []
    for module, path in MODULES.items():
        if _stage(module) == "pipelines" or module.endswith(".component"):
            continue
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(name == "kfp" or name.startswith("kfp.") for name in names):
                wrong.append(module)
    assert not wrong, "logic modules import kfp: " + ", ".join(sorted(set(wrong)))


def test_method_packages_hold_only_the_fixed_roles():
    roles = {"__init__.py", "local.py", "vertex.py", "steps.py", "component.py"}
    extra = []
    for stage in METHOD_STAGES:
        base = os.path.join(ROOT, "components", stage)
        for name in sorted(os.listdir(base)):
            folder = os.path.join(base, name)
            if os.path.isdir(folder) and os.path.exists(os.path.join(folder, "__init__.py")):
                files = {f for f in os.listdir(folder) if f.endswith(".py")}
                extra += [f"{stage}/{name}/{f}" for f in sorted(files - roles)]
    assert not extra, "method sub-packages hold local/vertex/steps/component only: " + ", ".join(extra)


def test_the_report_lists_layers_like_the_docs():
    with open(os.path.join(ROOT, "docs", "ARCHITECTURE.md"), encoding="utf-8") as handle:
        text = handle.read()
    positions = [text.find(f"`{stage}`") for stage in LAYERS]
    assert all(p >= 0 for p in positions), "docs/ARCHITECTURE.md names every layer"
    assert positions == sorted(positions), "docs/ARCHITECTURE.md lists the layers in LAYERS order"


def test_modules_graph_sees_function_local_imports():
    # The checks above are only as good as the graph: make sure a function-local import is in it.
    source = GRAPH["tunekit.components.tuning.supervised.steps"]
    assert "tunekit.components.tuning.supervised.local" in source
    assert defaultdict  # keep the import used for readers extending the checks
