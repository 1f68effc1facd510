"""Your own data (linf_opt/data/sources.py): arrays, torch datasets and loaders, data factories."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import linf_opt as lo
from linf_opt import ConfigError, DataError
from linf_opt.data.sources import as_data, call_factory, from_arrays, from_loaders, iterate_batches, load_factory
from linf_opt.training.config import load_problem


class Stream(IterableDataset):
    """Samples made on the fly, never held in memory as a whole."""

    def __init__(self, n, classes=None, seed=0):
        self.n, self.classes_, self.seed = n, classes, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.n):
            u = torch.rand(3, generator=g)
            yield u, (torch.tensor(int(u.sum() * 10) % self.classes_) if self.classes_ else u.sum(0, keepdim=True))


def test_from_arrays_infers_classification_and_classes():
    d = from_arrays(np.random.rand(50, 3), np.arange(50) % 4, np.random.rand(10, 3), np.arange(10) % 4)
    assert (d.task, d.input_dim, d.input_shape, d.output_dim) == ("classification", 3, (3,), 4)
    assert d.train_targets.dtype == torch.int64 and d.train_inputs.dtype == torch.float32
    assert from_arrays(np.zeros((4, 2)), [0, 1, 0, 1], np.zeros((2, 2)), [0, 1], num_classes=7).output_dim == 7


def test_from_arrays_regression_shapes_and_dtype():
    x = torch.linspace(-1, 1, 20)
    d = from_arrays(x, torch.sin(x), x[:5], torch.sin(x[:5]), dtype=torch.float64)
    assert d.task == "regression" and d.train_inputs.shape == (20, 1) and d.train_targets.shape == (20, 1)
    assert d.train_targets.dtype == torch.float64 and d.output_dim == 1
    d = from_arrays(np.zeros((6, 2)), np.arange(6), np.zeros((2, 2)), np.arange(2), task="regression")
    assert d.task == "regression" and d.train_targets.dtype == torch.float32
    d = from_arrays(np.zeros((6, 2)), np.zeros((6, 3)), np.zeros((2, 2)), np.zeros((2, 3)))
    assert d.output_dim == 3


def test_from_arrays_images_keep_their_shape():
    d = from_arrays(torch.rand(8, 1, 6, 6), torch.arange(8) % 2, torch.rand(4, 1, 6, 6), torch.arange(4) % 2)
    assert d.input_shape == (1, 6, 6) and d.input_dim == 36


def test_from_arrays_errors():
    with pytest.raises(DataError, match="one target per sample"):
        from_arrays(np.zeros((5, 2)), np.zeros(4), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(DataError, match="the same"):
        from_arrays(np.zeros((5, 2)), np.zeros(5), np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(DataError, match="outside 0..2"):
        from_arrays(np.zeros((3, 2)), [0, 1, 2], np.zeros((1, 2)), [5], num_classes=3)
    with pytest.raises(DataError, match="≥ 0"):
        from_arrays(np.zeros((3, 2)), [0, -1, 2], np.zeros((1, 2)), [0])
    with pytest.raises(DataError, match="non-integer"):
        from_arrays(np.zeros((2, 2)), [0.5, 1.0], np.zeros((1, 2)), [0.0], task="classification")
    with pytest.raises(ValueError, match="task"):
        from_arrays(np.zeros((2, 2)), [0, 1], np.zeros((1, 2)), [0], task="ranking")
    with pytest.raises(DataError, match="X_train"):
        from_arrays(object(), [0], np.zeros((1, 2)), [0])


def test_from_loaders_dataloader_and_streaming():
    X, y = torch.rand(40, 3), torch.arange(40) % 3
    d = from_loaders(DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True),
                     DataLoader(TensorDataset(X[:10], y[:10]), batch_size=5))
    assert (d.task, d.output_dim, d.input_shape, d.in_memory) == ("classification", 3, (3,), False)
    s = from_loaders(Stream(30, classes=4), Stream(12, classes=4, seed=1), batch_size=7)
    assert s.task == "classification" and s.output_dim == 4 and s.input_dim == 3    # classes by one pass
    batches = list(iterate_batches(s, "train"))
    assert [b[0].shape[0] for b in batches] == [7, 7, 7, 7, 2] and batches[0][1].dtype == torch.int64
    r = from_loaders(Stream(20), Stream(5), batch_size=10)
    assert r.task == "regression" and r.output_dim == 1
    U, T = next(iterate_batches(r, "test", dtype=torch.float64))
    assert T.shape == (5, 1) and T.dtype == torch.float64


def test_from_loaders_uses_declared_classes_and_rejects_bad_batches():
    class Labelled(torch.utils.data.Dataset):
        classes = ["a", "b", "c", "d", "e"]

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.rand(2), i % 2

    assert from_loaders(Labelled(), Labelled(), batch_size=3).output_dim == 5
    bad = DataLoader([torch.rand(2) for _ in range(4)], batch_size=2)
    with pytest.raises(DataError, match="two tensors"):
        from_loaders(bad, bad)
    with pytest.raises(DataError, match="no batches"):
        from_loaders(DataLoader(TensorDataset(torch.rand(0, 2), torch.zeros(0, dtype=torch.long))), bad)


def test_as_data_forms():
    X, y = torch.rand(12, 2), torch.rand(12, 1)
    assert isinstance(as_data((X, y, X, y)), lo.Dataset)
    assert isinstance(as_data(((X, y), (X, y))), lo.Dataset)
    assert isinstance(as_data((TensorDataset(X, y), TensorDataset(X, y))), lo.Dataset)   # the fast path
    assert isinstance(as_data((DataLoader(TensorDataset(X, y)), DataLoader(TensorDataset(X, y)))), lo.LoaderData)
    d = lo.function_estimation_data(n_train=4, n_test=4)
    ds = lo.Dataset(d.u_train, d.y_train, d.u_test, d.y_test, "regression", 1)
    assert as_data(ds) is ds
    with pytest.raises(DataError, match="training and the test"):
        as_data(DataLoader(TensorDataset(X, y)))
    with pytest.raises(DataError, match="expected a linf_opt.Dataset"):
        as_data({"X": X})
    with pytest.raises(DataError, match="expected a linf_opt.Dataset"):
        as_data((X, y, X))


FACTORY = '''
import torch
from torch.utils.data import DataLoader, TensorDataset

def arrays(config, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(config.n_train, 2, generator=g)
    return X, X.sum(1), X[:8], X[:8].sum(1)

def loaders(config, **kw):
    X = torch.rand(32, 4); y = (X.sum(1) > 2).long()
    return DataLoader(TensorDataset(X, y), batch_size=kw["batch_size"]), DataLoader(TensorDataset(X, y), batch_size=16)

def plain(config):
    return 42

NOT_CALLABLE = 3
'''


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "my_factory_mod.py").write_text(FACTORY)
    (tmp_path / "broken_factory_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_factory_mod"


def test_python_factory_in_a_problem(factory_module):
    p = load_problem({"seed": 2, "data": {"kind": "python", "factory": f"{factory_module}:arrays", "n_train": 24}})
    d = lo.load_dataset(p)
    assert d.task == "regression" and d.train_inputs.shape == (24, 2)
    g = torch.Generator().manual_seed(2)
    torch.testing.assert_close(d.train_inputs, torch.rand(24, 2, generator=g))   # seed passed by name
    p = load_problem({"data": {"kind": "python", "factory": f"{factory_module}:loaders"},
                      "training": {"batch_size": 5, "loss": "cross_entropy"}})
    d = lo.load_dataset(p)
    assert isinstance(d, lo.LoaderData) and d.train.batch_size == 5 and d.output_dim == 2


def test_python_factory_errors(factory_module):
    with pytest.raises(ConfigError, match="package.module:function"):
        load_problem({"data": {"kind": "python"}})
    with pytest.raises(ConfigError, match="package.module:function"):
        load_problem({"data": {"kind": "python", "factory": "os.path.join"}})
    with pytest.raises(ConfigError, match='kind = "python"'):
        load_problem({"data": {"factory": "a:b"}})
    with pytest.raises(ConfigError, match="no module named 'not_a_module_abc'"):
        load_factory("not_a_module_abc:load")
    with pytest.raises(ConfigError, match="importing 'broken_factory_mod' failed"):
        load_factory("broken_factory_mod:load")
    with pytest.raises(ConfigError, match="no attribute 'missing'.*arrays"):
        load_factory(f"{factory_module}:missing")
    with pytest.raises(ConfigError, match="not a function"):
        load_factory(f"{factory_module}:NOT_CALLABLE")
    with pytest.raises(ConfigError, match="returned data of no accepted form.*int"):
        call_factory(f"{factory_module}:plain", None)


def test_factory_module_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "cwd_only_factory.py").write_text("def f(config):\n    return [[0.0], [1.0]], [0.0, 1.0], [[0.5]], [0.5]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    assert call_factory("cwd_only_factory:f", None).train_inputs.shape == (2, 1)
