"""The three floors: no import runs up.

Floor 1 `kvq.core` imports nothing of the project outside itself; floor 2 `models` and `datasets`
import only `kvq.core` of `kvq`, and not each other; floor 3: `kvq.eval` and `kvq.features` do not
import `kvq.api` or `kvq.engine`, `kvq.api` does not import `kvq.engine`; nothing under `kvq/`
imports an entry point (the top-level scripts, scripts/, benchmarks/).

An import is any `import` / `from ... import` (at module level or inside a function, relative ones
resolved), and any string constant that is exactly the dotted name of a module of this project
(`Registry(modules=("models.ksvqe",))`), or any name given to `importlib.import_module` /
`__import__`. Docstrings and comments are not imports.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable, Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("kvq", "models", "datasets")


def entry_points(root: Path) -> set[str]:
    """Top-level names of the entry points: the top-level scripts, scripts/ and benchmarks/."""
    return {p.stem for p in root.glob("*.py")} | {"scripts", "benchmarks"}


def module_name(root: Path, path: Path) -> str:
    """kvq/core/io.py -> kvq.core.io; models/__init__.py -> models."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(root: Path, name: str) -> bool:
    """`name` is a module or package of the tree at `root`."""
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def imports(root: Path, path: Path, tops: set[str]) -> Iterator[tuple[int, str]]:
    """(line, dotted target) of every import of the project's modules (top names `tops`) in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(root, path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    skip = docstrings(tree)
    loaders = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (getattr(node.func, "attr", None) == "import_module"
                                           or getattr(node.func, "id", None) in ("import_module", "__import__")):
            loaders.update(id(a) for a in node.args)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{a.name}" if module else a.name for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            name = node.value
            if all(part.isidentifier() for part in name.split(".")) and (
                    id(node) in loaders or ("." in name and is_module(root, name))):
                targets = [name]
        for target in targets:
            if target.split(".")[0] in tops:
                yield node.lineno, target


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def rule_broken(source: str, target: str, entries: set[str]) -> Optional[str]:
    """Why `source` (a module) may not import `target`, or None when it may."""
    if under(source, "kvq") and target.split(".")[0] in entries:
        return "nothing under kvq/ imports an entry point"
    if under(source, "kvq.core"):
        if target != "kvq" and not under(target, "kvq.core"):
            return "kvq.core imports nothing of the project outside kvq.core"
    elif under(source, "models") or under(source, "datasets"):
        own = source.split(".")[0]
        if under(target, "kvq") and target != "kvq" and not under(target, "kvq.core"):
            return f"{own} imports only kvq.core of kvq"
        if not under(target, own) and not under(target, "kvq"):
            return f"{own} imports neither the other floor-2 package nor an entry point"
    elif under(source, "kvq.eval") or under(source, "kvq.features"):
        if under(target, "kvq.api") or under(target, "kvq.engine"):
            return "kvq.eval and kvq.features import neither kvq.api nor kvq.engine"
    elif under(source, "kvq.api") and under(target, "kvq.engine"):
        return "kvq.api does not import kvq.engine"
    return None


def violations(root: Path, files: Iterable[Path]) -> list[str]:
    """'file:line: source imports target (rule)' for every import that runs up."""
    entries = entry_points(root)
    tops = set(CHECKED) | entries
    out = []
    for path in sorted(files):
        source = module_name(root, path)
        for line, target in sorted(imports(root, path, tops)):
            why = rule_broken(source, target, entries)
            if why:
                out.append(f"{path.relative_to(root)}:{line}: {source} imports {target} ({why})")
    return out


def checked_files(root: Path) -> list[Path]:
    return [p for top in CHECKED for p in (root / top).rglob("*.py")]


def test_no_import_runs_up_a_floor() -> None:
    found = violations(ROOT, checked_files(ROOT))
    assert not found, "imports that run up a floor:\n" + "\n".join(found)


def test_the_checker_finds_planted_violations(tmp_path: Path) -> None:
    """Module-level, in-function, relative and string imports are found; docstrings, comments and
    allowed arrows are not."""
    files = {
        "train.py": "",
        "models/__init__.py": "",
        "models/ksvqe.py": "",
        "datasets/__init__.py": "",
        "kvq/__init__.py": "",
        "kvq/engine/__init__.py": "",
        "kvq/engine/trainer.py": "",
        "kvq/api/__init__.py": "",
        "kvq/core/__init__.py": "",
        "kvq/core/io.py": "",
        "kvq/core/registry.py": (
            '"""Lists models.ksvqe."""\n'
            "import importlib\n"
            "from . import io  # models.ksvqe\n"
            "from kvq.core.io import x\n"
            "import models.ksvqe\n"
            "def f():\n"
            "    from ..engine import trainer\n"
            "    importlib.import_module('datasets')\n"
            "    return ('models.ksvqe', 'models.nothing', 'a.b')\n"
        ),
        "kvq/api/scorer.py": "def g():\n    import train\n    from kvq.engine.trainer import T\n",
        "datasets/views.py": "from kvq.core.io import x\nfrom models import ksvqe\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(tmp_path, checked_files(tmp_path))
    assert [f.split(" (")[0] for f in found] == [
        "datasets/views.py:2: datasets.views imports models.ksvqe",
        "kvq/api/scorer.py:2: kvq.api.scorer imports train",
        "kvq/api/scorer.py:3: kvq.api.scorer imports kvq.engine.trainer.T",
        "kvq/core/registry.py:5: kvq.core.registry imports models.ksvqe",
        "kvq/core/registry.py:7: kvq.core.registry imports kvq.engine.trainer",
        "kvq/core/registry.py:8: kvq.core.registry imports datasets",
        "kvq/core/registry.py:9: kvq.core.registry imports models.ksvqe",
    ], "\n".join(found)
