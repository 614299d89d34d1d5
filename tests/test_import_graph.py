"""No import cycle anywhere in the package, imports inside functions included (grimp reads
every import statement). import-linter's contracts (`.importlinter`, run by `make lint`)
hold the layering and forbid cycles between siblings; this also catches a module that
imports its own package's face (`pkg/__init__` <-> `pkg/mod`), which those don't."""

from __future__ import annotations

import grimp


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"pkg": {"pkg.mod"}, "pkg.mod": {"pkg"}}) == [["pkg", "pkg.mod"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    """The CLI's lazy commands count as imports of `cli.app` (they are, when they run)."""
    from imgburst.cli.app import COMMANDS

    graph = grimp.build_graph("imgburst", cache_dir=None)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    lazy = {target.partition(":")[0] for target, _summary in COMMANDS.values()}
    assert lazy <= set(graph.modules), lazy - set(graph.modules)
    edges["imgburst.cli.app"] |= lazy
    assert cycles(edges) == []
