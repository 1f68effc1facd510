"""The fault campaign of bench/faults.py, one try of each case (kill -9 and resume, a concurrent run,
--overwrite then a failing run, corrupt checkpoints): no data lost, no silent garbage, no traceback."""
import importlib.util
import pathlib
import sys

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "faults.py"


def test_quick_fault_campaign_counts_are_zero(tmp_path):
    spec = importlib.util.spec_from_file_location("faults", BENCH)
    faults = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("faults", faults)     # dataclasses look their module up
    spec.loader.exec_module(faults)
    rows = faults.campaign(quick=True, seed=0, keep=str(tmp_path / "work"))
    report = faults.table(rows) + "".join(f"\n{r.kind}: {f}" for r in rows for f in r.failures)
    assert [r.kind for r in rows] and all(r.tries >= 1 for r in rows), report
    assert sum(r.data_lost for r in rows) == 0, report
    assert sum(r.garbage for r in rows) == 0, report
    assert sum(r.tracebacks for r in rows) == 0, report
    assert all(r.passed == r.tries for r in rows), report
