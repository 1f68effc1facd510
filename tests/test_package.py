"""The package's architecture: layers import downward only, and the import graph has no cycles.

The graph is read from the source (every ``import``/``from … import`` of ``linf_opt``, deferred ones
inside functions included), so a cycle hidden in a function body fails here too.
"""
import ast
import pathlib

import pytest

import linf_opt

PACKAGE = pathlib.Path(linf_opt.__file__).parent
# Lower layers first; a module may import from its own layer and the ones before it.
LAYERS = [
    {"errors", "_tensor", "plots"},     # plots: every figure; imports nothing of the package
    {"operators"},
    {"sets"},
    {"equilibrium"},
    {"models", "data"},
    {"robustness"},
    {"training"},
    {"compare"},
    {"reports", "cli", "__main__"},
]


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("linf_opt"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("linf_opt"):
                found.add(mod)
                for a in node.names:           # `from linf_opt.x import y` may name a submodule y
                    if (PACKAGE.parent / (mod.replace(".", "/") + "/" + a.name + ".py")).exists():
                        found.add(f"{mod}.{a.name}")
    return found


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imp in _imports(path):
            while imp and imp not in modules:      # `linf_opt.x.Name` -> the module linf_opt.x
                imp = imp.rpartition(".")[0]
            if imp and imp != name:
                targets.add(imp)
        graph[name] = targets
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module}: not assigned to a layer in tests/test_package.py")


def test_import_graph_has_no_cycles():
    graph = _graph()
    # A package's __init__ re-exports its submodules; importing the package from a submodule would
    # be a cycle through __init__, which the edges below include.
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_layers_import_downward_only():
    graph = _graph()
    bad = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
           for m, targets in graph.items() if m != "linf_opt"
           for t in targets if t != "linf_opt" and _layer(t) > _layer(m)]
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_module_imports_the_top_level_package():
    graph = _graph()
    offenders = sorted(m for m, t in graph.items() if "linf_opt" in t and m != "linf_opt")
    assert not offenders, f"import from the top-level package (use the defining module): {offenders}"


def test_public_names_are_importable_from_the_top():
    for name in ["ImplicitNetwork", "mu_inf",
                 "project_mu_inf", "MuInfPolytope", "get_set", "solve_fixed_point", "SolverStats",
                 "lipschitz_bound", "certify", "reachable_box", "pgd", "train", "Trainer", "load_problem"]:
        assert hasattr(linf_opt, name), name
