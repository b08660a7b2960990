"""mor's import structure: modules by layer, import cycles and upward imports (grimp).

    python benchmarks/import_graph.py [DIR]

DIR (optional) is put first on ``sys.path``: the directory that holds the ``mor`` package to
analyse (e.g. a ``git worktree`` of an old commit); without it, the ``mor`` that Python finds.
Imports inside functions count (grimp sees them). The layer order is the one of
docs/architecture.md and the ``[tool.importlinter]`` contract. The flat layout before the
layered packages (commit 1f4e64e and older) is read too: each old module is placed in the layer
its code belongs to now (``FLAT``).

A cycle is a strongly connected component of more than one module. An upward import is one
whose importer sits in a lower layer than the module it imports; an import between the
independent siblings (files | export | plot | torch) is counted apart.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import grimp

# Bottom first; one entry per rank, siblings of equal rank in a tuple.
ORDER = ["conventions", "_numerics", "systems", "analysis", "fitting", "methods", "drivers",
         ("files", "export", "plot", "torch"), "demo", "cli"]
RANK = {name: rank for rank, entry in enumerate(ORDER)
        for name in (entry if isinstance(entry, tuple) else (entry,))}
ROOT = "(root: mor/__init__.py re-exports; not a layer)"

# The flat layout (1f4e64e): old module -> the layer its code lives in now.
FLAT = {
    "mor._freq": "_numerics", "mor._golden": "_numerics", "mor._gramians": "_numerics",
    "mor._kernels": "_numerics", "mor._lanczos": "_numerics", "mor._linalg": "_numerics",
    "mor._lm": "_numerics", "mor._parallel": "_numerics",
    "mor.ssm": "systems", "mor.io": "systems", "mor.statespace": "systems",
    "mor.hankel": "analysis", "mor.bounds": "analysis", "mor.metrics": "analysis",
    "mor.residue_fit": "fitting", "mor.minimax": "fitting", "mor.methods.residues": "fitting",
    "mor.methods._varpro": "fitting", "mor._varpro_kernels": "fitting",
    "mor._residue_kernels": "fitting",
    "mor._aaa_kernels": "methods",
    "mor.reduction": "drivers", "mor.select": "drivers", "mor.distill": "drivers",
}


def layer_of(module: str, flat: bool) -> str:
    if module == "mor":
        return ROOT
    if flat and module in FLAT:
        return FLAT[module]
    top = module.split(".")[1]
    if top not in RANK:
        raise SystemExit(f"{module}: in no layer (add it to ORDER or FLAT)")
    return top


def cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    successors = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    for start in sorted(graph.modules):
        if start in index:
            continue
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(successors[start]))]
        while work:
            node, todo = work[-1]
            for nxt in todo:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(successors[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def lines(graph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    return ",".join(str(n) for n in sorted({d["line_number"] for d in details}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="directory holding the mor package")
    args = parser.parse_args()
    if args.path:
        sys.path.insert(0, str(Path(args.path).resolve()))
    graph = grimp.build_graph("mor", cache_dir=None)
    flat = "mor.systems" not in graph.modules
    where = Path(importlib.util.find_spec("mor").origin).parent
    edges = sorted((a, b) for a in graph.modules
                   for b in graph.find_modules_directly_imported_by(a))
    layout = ("flat layout: each old module placed in the layer it belongs to now" if flat
              else "layered packages")
    print(f"mor at {where} ({layout})")
    print(f"{len(graph.modules)} modules, {len(edges)} direct imports between them "
          "(grimp; imports inside functions included)")

    print("\nModules by layer, top first:")
    by_layer: dict[str, list[str]] = {}
    for module in sorted(graph.modules):
        by_layer.setdefault(layer_of(module, flat), []).append(module)
    for entry in [ROOT] + ORDER[::-1]:
        for name in (entry if isinstance(entry, tuple) else (entry,)):
            sibling = " (independent sibling)" if isinstance(entry, tuple) else ""
            members = by_layer.get(name, [])
            print(f"  {name}{sibling}: {' '.join(members) if members else '-'}")

    found = cycles(graph)
    print(f"\nImport cycles (strongly connected components of >1 module): {len(found)}")
    for component in found:
        print(f"  - {', '.join(component)}")

    upward, sideways = [], []
    for a, b in edges:
        la, lb = layer_of(a, flat), layer_of(b, flat)
        if ROOT in (la, lb) or la == lb:
            continue
        if RANK[la] < RANK[lb]:
            upward.append(f"{a} ({la}) -> {b} ({lb}), l.{lines(graph, a, b)}")
        elif RANK[la] == RANK[lb]:
            sideways.append(f"{a} ({la}) -> {b} ({lb}), l.{lines(graph, a, b)}")
    print(f"Upward imports (a module importing from a layer above its own): {len(upward)}")
    for line in upward:
        print(f"  - {line}")
    print(f"Imports between independent siblings (files | export | plot | torch): "
          f"{len(sideways)}")
    for line in sideways:
        print(f"  - {line}")


if __name__ == "__main__":
    main()
