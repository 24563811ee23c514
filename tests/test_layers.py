"""The core's shape (docs/architecture.md): imports flow one way, from the HTTP edge to the
domain to storage, with no cycle between the modules of `ecard`, and only the HTTP edge (with the
app factory and the CLI) knows the web framework. Read from the source, so a new
import that breaks the rule fails here, not in a review."""

from __future__ import annotations

import ast
from pathlib import Path

ECARD = Path(__file__).resolve().parent.parent / "ecard"


def _graph() -> dict[str, set[str]]:
    modules = {
        ".".join(p.relative_to(ECARD.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in ECARD.rglob("*.py")
    }
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t not in (name, "ecard"):
                    edges[name].add(t)
    return edges


def test_nothing_outside_the_http_edge_imports_it():
    edges = _graph()
    wrong = sorted(
        (m, t)
        for m, ts in edges.items()
        for t in ts
        if t.startswith("ecard.api") and not m.startswith("ecard.api") and m != "ecard"
    )  # the factory wires them
    assert wrong == []


def test_only_the_http_edge_the_app_factory_and_the_cli_import_the_web_framework():
    web = ("flask", "werkzeug", "flask_openapi3", "flask_jwt_extended", "flask_migrate", "gunicorn")
    wrong = []
    for path in ECARD.rglob("*.py"):
        module = ".".join(path.relative_to(ECARD.parent).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith("ecard.api") or module in ("ecard", "ecard.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else []
            )
            wrong += [(module, n) for n in names if n.split(".")[0] in web]
    assert wrong == []


def test_the_modules_of_ecard_import_each_other_without_a_cycle():
    edges, state, cycles = _graph(), {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                cycles.append(path[path.index(t) :] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_graph_sees_the_imports_it_judges():
    edges = _graph()
    assert (
        "ecard.storage" in edges["ecard.verifications"]
        and "ecard.api.transactions" in edges["ecard.api.codes"]
    )
