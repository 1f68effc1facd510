"""Build the API reference of linf_opt from its docstrings with pdoc (pip install -e '.[docs]').

    python docs/build_api.py [OUT]          # HTML into OUT (default docs/api/; not committed)

pdoc itself runs as ``pdoc -d google -o OUT MODULE ...`` on every public module; the list is
needed because pdoc walks into a package only through the submodules its ``__all__`` names, and the
subpackages' ``__all__`` name their classes and functions, not their modules. The docstrings use
Google-style ``Args:`` sections and the Sphinx roles (``:class:`~linf_opt.x.Y```, ``:func:``, ``:mod:``),
which pdoc's google docformat (its restructuredtext conversion included) renders as lists and links,
the leading ``~`` dropped by the template in docs/pdoc_templates/. pdoc leaves a
reference that names nothing as plain text, silently: :func:`broken_references` finds those, and the
build fails on them (tests/test_docs.py runs it).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
PACKAGE = "linf_opt"
ROLE = re.compile(r"(?::py)?:(mod|func|data|const|class|meth|attr|exc|obj):`([^`]+)`")


def public_modules(package: str = PACKAGE) -> list[str]:
    """The package and every submodule none of whose name parts starts with ``_``, sorted."""
    pkg = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, f"{package}.")]
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split(".")))


def _resolve_attrs(obj, parts: list[str]) -> bool:
    for i, part in enumerate(parts):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        # a dataclass field or an annotated / documented attribute that exists on instances only
        if inspect.isclass(obj) and i == len(parts) - 1:
            import pdoc.doc
            return part in getattr(obj, "__annotations__", {}) or part in pdoc.doc.Class(
                obj.__module__, obj.__qualname__, obj, (obj.__module__, obj.__qualname__)).members
        return False
    return True


def resolves(target: str, module, owner=None) -> bool:
    """Whether a role's target names something: an absolute dotted name, or a name in ``module``'s
    namespace or in the class ``owner``'s (the docstring's class)."""
    name = target.strip().lstrip("~").removesuffix("()")
    if "<" in name:                          # :class:`text <target>`
        name = name.rsplit("<", 1)[1].rstrip(">").strip()
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            mod = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        if _resolve_attrs(mod, parts[i:]):
            return True
        break
    import builtins
    return any(base is not None and _resolve_attrs(base, parts) for base in (owner, module, builtins))


def broken_references(modules: list[str]) -> list[str]:
    """``module.qualname: :role:`target``` for every role in a docstring whose target names nothing."""
    import pdoc.doc

    broken = []

    def visit(doc, module, owner):
        # a docstring inherited from a base class (e.g. torch's Module.forward) is not this module's
        own = isinstance(doc, pdoc.doc.Module) or not inspect.isroutine(doc.obj) or doc.obj.__doc__ is not None
        for kind, target in ROLE.findall(doc.docstring if own else ""):
            if not resolves(target, module, owner):
                broken.append(f"{doc.fullname}: :{kind}:`{target}`")
        if isinstance(doc, pdoc.doc.Namespace):
            for member in doc.own_members:
                if member.taken_from[0] == module.__name__:
                    visit(member, module, member.obj if isinstance(member, pdoc.doc.Class) else
                          (doc.obj if isinstance(doc, pdoc.doc.Class) else None))

    for name in modules:
        module = importlib.import_module(name)
        visit(pdoc.doc.Module(module), module, None)
    return broken


def build(out: str | Path, modules: list[str] | None = None) -> list[Path]:
    """Render the API reference into ``out``; return the module pages. ValueError lists the broken
    docstring references."""
    import pdoc
    import pdoc.extract
    import pdoc.render

    modules = public_modules() if modules is None else modules
    broken = broken_references(modules)
    if broken:
        raise ValueError(f"{len(broken)} docstring references name nothing:\n  " + "\n  ".join(broken))
    pdoc.render.configure(docformat="google", template_directory=DOCS / "pdoc_templates")
    out = Path(out)
    # pdoc walks PACKAGE into the submodules that the ``__all__`` lists reach; name the others after it
    # (each once: pdoc warns on a module added twice), and drop the private ones the walk adds
    walked = set(pdoc.extract.walk_specs([PACKAGE]))
    pdoc.pdoc(PACKAGE, *[m for m in modules if m not in walked], rf"!{PACKAGE}(\..*)?\._",
              output_directory=out)
    return [out / (m.replace(".", "/") + ".html") for m in modules]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pages = build(sys.argv[1] if len(sys.argv) > 1 else DOCS / "api")
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(f"{len(pages)} module pages in {pages[0].parent}")
    sys.exit(1 if caught else 0)
