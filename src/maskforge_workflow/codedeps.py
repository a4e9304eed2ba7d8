"""A stage's code dependencies: its module and every project module it imports, read from the
import statements (followed through the core package), so editing any file it uses reruns it."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from maskforge_workflow.table import Stage

ROOT = Path(__file__).resolve().parents[2]   # the project: src/maskforge_workflow/codedeps.py


def _module_path(module: str) -> Path | None:
    """The repo file of a `maskforge.*` or `stages.*` module (None for anything else)."""
    parts = module.split(".")
    base = {"maskforge": ROOT / "src", "stages": ROOT}.get(parts[0])
    if base is None:
        return None
    path = base.joinpath(*parts)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@cache
def _imports(path: Path, module: str) -> frozenset[str]:
    """Modules named by the import statements of one file (relative imports resolved)."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)   # `from pkg import module`
    return frozenset(names)


def code_files(stage: Stage) -> list[str]:
    """The files whose edits must rerun `stage`: its module and every project module it imports,
    directly or through others (package __init__ files hold no code and are left out)."""
    seen: dict[str, Path] = {}
    todo = [stage.module]
    while todo:
        module = todo.pop()
        path = _module_path(module)
        if module in seen or path is None or not path.exists():
            continue
        seen[module] = path
        todo.extend(sorted(_imports(path, module)))
    files = [p.relative_to(ROOT).as_posix() for p in seen.values() if p.name != "__init__.py"]
    return sorted(files, key=lambda f: (not f.startswith("stages/"), f))
