"""The package's structure (docs/architecture.md): no import cycle, imports inside functions
only where they buy something, and the layers contract of ``lint-imports`` catches an upward
import. ``make test`` runs ``lint-imports`` on the tree itself before pytest."""

from __future__ import annotations

import ast
import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")
pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mor"

# Packages that may be imported inside a function: optional extras, or heavy to import
# (``import mor`` stays fast and works without them). mor/cli.py may import anything inside
# its commands: the CLI's start-up time.
LAZY_OK = {"torch", "triton", "cvxpy", "dask", "distributed", "matplotlib", "safetensors"}
LAZY_ANYTHING = {"mor/cli.py"}


def _graph():
    return grimp.build_graph("mor", cache_dir=None)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _describe_cycle(graph, component: list[str]) -> str:
    """One concrete circle through the component, with file lines."""
    first = component[0]
    inside = set(component)
    step = next(m for m in sorted(graph.find_modules_directly_imported_by(first)) if m in inside)
    path = [first] + list(graph.find_shortest_chain(importer=step, imported=first))
    parts = []
    for importer, imported in zip(path, path[1:]):
        lines = sorted(d["line_number"] for d in graph.get_import_details(
            importer=importer, imported=imported))
        parts.append(f"{importer} -> {imported} (l.{','.join(map(str, lines))})")
    return "; ".join(parts)


def test_no_import_cycle():
    """No circle among mor's modules, imports inside functions included (grimp sees them)."""
    graph = _graph()
    cycles = _cycles(graph)
    if not cycles:
        return
    described = [_describe_cycle(graph, c) for c in cycles]
    pytest.fail("import cycle(s) in mor:\n" + "\n".join(f"  {d}" for d in described))


def _comment_lines(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
    return comments


def _gives_reason(comment: str | None) -> bool:
    """A comment that says something beyond linter pragmas."""
    if not comment:
        return False
    text = re.sub(r"(noqa(:\s*[\w,\s]+)?|type:\s*ignore(\[[^\]]*\])?|pragma:[^#]*)", "",
                  comment.lstrip("#"), flags=re.I)
    return len(re.findall(r"[A-Za-z]{2,}", text)) >= 2


def _function_level_imports(path: Path) -> list[tuple[int, list[str], bool]]:
    """``(line, imported module names, has a reason comment)`` per import in a function."""
    source = path.read_text()
    comments = _comment_lines(source)
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif child.level:
                    names = ["mor." + "." * child.level + (child.module or "")]  # relative
                else:
                    names = [child.module]
                span = range(child.lineno - 1, (child.end_lineno or child.lineno) + 1)
                reason = any(_gives_reason(comments.get(n)) for n in span)
                found.append((child.lineno, names, reason))
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


SOURCES = sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("relpath", SOURCES)
def test_function_level_imports_are_lazy_on_purpose(relpath):
    """An import inside a function is of an optional or heavy package (or in the CLI, for its
    start-up time) and carries a comment, on its line or the line before, saying why."""
    problems = []
    for line, names, reason in _function_level_imports(ROOT / relpath):
        allowed = relpath in LAZY_ANYTHING or all(n.split(".")[0] in LAZY_OK for n in names)
        if not allowed:
            problems.append(f"{relpath}:{line}: imports {', '.join(names)} inside a function "
                            f"(allowed there only: {', '.join(sorted(LAZY_OK))}; "
                            "move it to the top of the module)")
        elif not reason:
            problems.append(f"{relpath}:{line}: import inside a function without a comment "
                            "(same line or the one before) saying why it is there")
    assert not problems, "\n".join(problems)


def _copy_package(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "mor", ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp_path / "pyproject.toml"
    shutil.copy(ROOT / "pyproject.toml", config)
    return src, config


def _lint_imports(src: Path, config: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    command = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.run(command + [str(config), "--no-cache", "--no-logo"], cwd=config.parent,
                          env=env, capture_output=True, text=True)


def test_layers_contract_holds(tmp_path):
    """``lint-imports`` passes on an unmodified copy of the package."""
    done = _lint_imports(*_copy_package(tmp_path))
    assert done.returncode == 0, ("the layers contract is broken:\n"
                                  f"{done.stdout[-3000:]}{done.stderr[-2000:]}")


def test_layers_contract_catches_an_upward_import(tmp_path):
    """A planted upward import (systems -> drivers) fails ``lint-imports``, which names it."""
    src, config = _copy_package(tmp_path)
    target = src / "mor" / "systems" / "statespace.py"
    lines = target.read_text().count("\n")
    target.write_text(target.read_text() + "\nimport mor.drivers.reduction  # planted\n")
    done = _lint_imports(src, config)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "mor.systems is not allowed to import mor.drivers" in done.stdout, done.stdout
    assert f"mor.systems.statespace -> mor.drivers.reduction (l.{lines + 2})" in done.stdout, \
        done.stdout
