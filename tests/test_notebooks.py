"""Every notebook in notebooks/ runs top to bottom without error (nbclient), in quick mode, and draws figures.

The notebooks run with ``LINF_OPT_QUICK=1`` (small sizes), the notebooks folder as working directory and
``LINF_OPT_DATA`` pointing to a tiny MNIST-shaped IDX data set written into ``tmp_path``, so that the suite never
depends on the real data. Each notebook must produce at least one ``image/png`` output. The execution time of
each notebook is printed (``pytest -s``) and recorded as a user property of the test.
"""
import os
import pathlib
import time

import pytest

from helpers import tiny_mnist

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300   # seconds per cell: generous, the whole notebook takes well under a minute in quick mode


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    data = tiny_mnist(tmp_path_factory.mktemp("mnist"), n_train=400, n_test=100)
    saved = {k: os.environ.get(k) for k in ("LINF_OPT_QUICK", "LINF_OPT_DATA")}
    os.environ["LINF_OPT_QUICK"] = "1"          # the kernel inherits the environment of this process
    os.environ["LINF_OPT_DATA"] = str(data)
    yield data
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


def test_notebooks_committed_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, notebook_env, record_property):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    record_property("seconds", round(seconds, 1))
    print(f"\n{path.name}: {seconds:.1f} s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, [f"{o.get('ename')}: {o.get('evalue')}" for o in errors]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: no figure (image/png output)"
