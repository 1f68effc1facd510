"""The guides' code runs: every ```python block of docs/guide_own_data.md and docs/guide_own_model.md is
executed, in order, in one namespace per guide, in an empty working directory, so the docs never rot.

Blocks tagged ```python file=NAME or ```toml file=NAME are written to NAME first (a module or a problem
file the next blocks use); other languages (bash, text) are not run.
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
