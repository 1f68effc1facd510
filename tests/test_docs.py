"""The guides' code runs: every ```python block of docs/guide_own_data.md and docs/guide_own_model.md is
executed, in order, in one namespace per guide, in an empty working directory, so the docs never rot.

Blocks tagged ```python file=NAME or ```toml file=NAME are written to NAME first (a module or a problem
file the next blocks use); other languages (bash, text) are not run. docs/guide_cli.md's commands are
checked against the command line's options, and the API reference (docs/build_api.py, pdoc) is built.
"""
import pathlib
import re
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
GUIDES = ["guide_own_data.md", "guide_own_model.md"]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


def blocks(text: str):
    """(language, file name or None, code) of every fenced block."""
    for info, code in FENCE.findall(text):
        words = info.split()
        lang = words[0] if words else ""
        name = next((w[5:] for w in words[1:] if w.startswith("file=")), None)
        yield lang, name, code


def test_guides_have_code():
    for guide in GUIDES:
        kinds = [lang for lang, _, _ in blocks((DOCS / guide).read_text())]
        assert kinds.count("python") >= 4, guide


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_code_runs(guide, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace = {"__name__": f"docs_{guide[:-3]}"}
    ran = 0
    for i, (lang, name, code) in enumerate(blocks((DOCS / guide).read_text())):
        if name is not None:
            (tmp_path / name).write_text(code)
        elif lang == "python":
            try:
                exec(compile(code, f"{guide}[block {i + 1}]", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"{guide}, code block {i + 1} failed: {type(exc).__name__}: {exc}\n{code}") from exc
            ran += 1
    assert ran >= 4
    for mod in [m for m in sys.modules if m == "my_data"]:
        del sys.modules[mod]       # the guide's module is tmp_path's; do not keep it for other tests


def test_api_reference_builds(tmp_path):
    """docs/build_api.py (pdoc) renders a page for every public module, without a warning, and no
    docstring role (:class:`...`, :func:`...`, ...) names something that does not exist."""
    pytest.importorskip("pdoc")
    import importlib.util
    import pkgutil
    import warnings

    spec = importlib.util.spec_from_file_location("build_api", DOCS / "build_api.py")
    build_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_api)
    import linf_opt
    expected = ["linf_opt"] + [m.name for m in pkgutil.walk_packages(linf_opt.__path__, "linf_opt.")
                               if not any(p.startswith("_") for p in m.name.split("."))]
    assert "linf_opt.training.trainer" in expected and "linf_opt.sets.projections" in expected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pages = build_api.build(tmp_path)
    assert not [f"{w.category.__name__}: {w.message}" for w in caught]
    for name in expected:
        page = tmp_path / (name.replace(".", "/") + ".html")
        assert page.is_file() and page in pages, name
        assert "Docstring processing failed" not in page.read_text(), name
    assert not list((tmp_path / "linf_opt").rglob("_*.html"))          # private modules stay out
    # a broken reference is caught
    assert build_api.resolves("~linf_opt.training.trainer.Trainer.fit", None)
    assert not build_api.resolves("linf_opt.training.trainer.NoSuchThing", None)


def _help(*command: str) -> str:
    import argparse
    from linf_opt.cli import build_parser

    parser = build_parser()
    if command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[command[0]]
    return parser.format_help()


def test_cli_guide_commands_exist():
    """docs/guide_cli.md: every `linf-opt CMD ...` line of its blocks uses options that CMD has, its
    bash blocks' overrides are valid problem keys and values, the problem files it names exist, and
    every --flag it mentions is an option of linf-opt (running the commands would take minutes)."""
    from linf_opt.training.config import load_problem, override, parse_assignment

    text = (DOCS / "guide_cli.md").read_text()
    commands = {c: _help(c) for c in ("train", "evaluate", "certify", "compare")}
    main_help = _help()
    checked = 0
    for lang, _, code in blocks(text):
        for line in code.splitlines():
            line = line.removeprefix("$ ").split("#")[0].strip()
            if not line.startswith("linf-opt "):
                continue
            words = line.split()[1:]
            while words and words[0].startswith("--"):            # global options before the command
                assert re.search(rf"(?<![\w-]){re.escape(words[0])}\b", main_help), line
                words = words[1:] if words[0] != "--threads" else words[2:]
            cmd, args = words[0], words[1:]
            assert cmd in commands, line
            for a in args:
                if a.startswith("--"):
                    assert re.search(rf"(?<![\w-]){re.escape(a)}\b", commands[cmd]), (a, line)
                elif "=" in a and cmd == "train" and lang == "bash":    # (the text blocks show errors)
                    override(load_problem({}), **dict([parse_assignment(a)]))
                elif a.startswith("problems/"):
                    assert (DOCS.parent / a).is_file(), a
            checked += 1
    assert checked >= 10
    every_help = main_help + "".join(commands.values())
    for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text)) - {"--logdir"}:   # (tensorboard's own)
        assert re.search(rf"(?<![\w-]){re.escape(flag)}\b", every_help), flag


def test_readme_and_guide_imports_resolve():
    """The README's Python blocks are sketches (they use names such as ``pixels`` that a reader has), so
    they are not run; but every import they and the guides show must work, and every ``lo.NAME`` they
    use must exist: the layered package moved modules once, and a stale path in the README went unseen."""
    import ast
    import importlib
    import importlib.util

    import linf_opt as lo

    texts = {"README.md": (DOCS.parent / "README.md").read_text()}
    texts.update({g: (DOCS / g).read_text() for g in (*GUIDES, "guide_cli.md", "mathematics.md")})
    checked = 0
    for where, text in texts.items():
        for lang, _, code in blocks(text):
            if lang != "python":
                continue
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("linf_opt"):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name) or importlib.util.find_spec(
                            f"{node.module}.{alias.name}") is not None, f"{where}: from {node.module} import {alias.name}"
                        checked += 1
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.startswith("linf_opt"):
                            importlib.import_module(alias.name)
                            checked += 1
                elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id == "lo"):
                    assert hasattr(lo, node.attr), f"{where}: lo.{node.attr}"
                    checked += 1
    assert checked >= 30
