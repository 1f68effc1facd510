"""Tests of linf_opt.data.datasets: IDX reading and writing, MNIST discovery and loading, function estimation."""
from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from linf_opt.data.datasets import (DATA_ENV_VAR, IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS, MNIST_MEAN, MNIST_STD,
                           NORMALIZED_RANGE, Dataset, eps_to_normalized, function_estimation_data, load_dataset,
                           load_mnist, mnist_file_names, read_idx, resolve_data_dir, target_derivative,
                           target_function, target_lipschitz, to_normalized, to_pixels, write_idx)
from linf_opt.errors import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_MNIST = [p for p in (Path("/work/shared/data/mnist"), REPO_ROOT.parent / "shared" / "data" / "mnist",
                          Path.cwd().parent / "shared" / "data" / "mnist")
              if (p / "t10k-images-idx3-ubyte.gz").is_file() or (p / "t10k-images-idx3-ubyte").is_file()]


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    """Tests decide for themselves whether LINF_OPT_DATA is set."""
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An independent IDX encoder (big-endian header and payload), to check write_idx against."""
    big = array.astype(array.dtype.newbyteorder(">"))
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()


def make_mnist(directory: Path, split: str = "test", n: int = 5, *, gz: bool = True, labels=None,
               n_labels: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write a tiny MNIST-shaped split (n images of 28×28) into ``directory``."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.asarray(labels if labels is not None else rng.integers(0, 10, n_labels or n), dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    image_name, label_name = mnist_file_names(split)
    suffix = ".gz" if gz else ""
    write_idx(directory / (image_name + suffix), images)
    write_idx(directory / (label_name + suffix), labels)
    return images, labels


# ---------------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, code", [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B),
                                         (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_every_type(tmp_path, dtype, code, suffix):
    rng = np.random.default_rng(1)
    array = (rng.normal(size=(3, 4, 2)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"x.idx{suffix}", array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert (gzip.decompress(raw) if suffix else raw) == idx_bytes(array, code)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    back[0] = 0  # writable


def test_read_idx_detects_gzip_by_magic_bytes_not_suffix(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    (tmp_path / "raw-named.gz").write_bytes(idx_bytes(array))
    (tmp_path / "gz-named").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw-named.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "gz-named"), array)


def test_write_idx_accepts_tensors_and_is_reproducible(tmp_path):
    t = torch.arange(6, dtype=torch.uint8).reshape(2, 3)
    a = write_idx(tmp_path / "a.gz", t).read_bytes()
    b = write_idx(tmp_path / "b.gz", t.numpy()).read_bytes()
    assert a == b  # no time stamp in the gzip header
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), t.numpy())


def test_write_idx_rejects_unsupported_dtype_and_scalars(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        write_idx(tmp_path / "x", np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="0-d"):
        write_idx(tmp_path / "x", np.uint8(3))


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    content = idx_bytes(np.zeros((4, 3, 3), dtype=np.uint8))[:-5]
    path = tmp_path / ("t.gz" if gz else "t")
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    msg = str(err.value)
    assert str(path) in msg and "4×3×3" in msg and "36 bytes" in msg and "31 bytes follow" in msg
    assert "5 missing" in msg


def test_truncated_header(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(idx_bytes(np.zeros((4, 3, 3), dtype=np.uint8))[:10])
    with pytest.raises(DataError, match=r"truncated IDX header.*16-byte header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="shorter than the 4-byte magic"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))[:-12])
    with pytest.raises(DataError, match="corrupt or truncated gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_trailing_bytes(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.arange(10, dtype=np.uint8)) + b"\x00\x01\x02")
    with pytest.raises(DataError, match="3 unexpected trailing bytes") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_wrong_magic(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x12\x34" + idx_bytes(np.arange(4, dtype=np.uint8))[2:])
    with pytest.raises(DataError, match="not an IDX file: magic number 0x12340801") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_expected_magic(tmp_path):
    path = write_idx(tmp_path / "labels", np.arange(4, dtype=np.uint8))
    assert read_idx(path, expect_magic=IDX_MAGIC_LABELS).shape == (4,)
    with pytest.raises(DataError, match=r"wrong IDX magic number 2049 \(unsigned byte, 1 dimension\); "
                                        r"expected 2051 \(unsigned byte, 3 dimensions\)"):
        read_idx(path, expect_magic=IDX_MAGIC_IMAGES)


def test_unknown_type_code_and_zero_dimensions(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x0A, 1]) + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="unknown IDX type code 0x0A"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x08, 0]))
    with pytest.raises(DataError, match="0 dimensions"):
        read_idx(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)
    assert issubclass(DataError, OSError)


# ---------------------------------------------------------------------------------------------------
# MNIST discovery and loading
# ---------------------------------------------------------------------------------------------------

def test_missing_directory_lists_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("linf_opt.data.datasets._PACKAGE_ROOT", tmp_path / "repo")
    with pytest.raises(DataError) as err:
        resolve_data_dir()
    msg = str(err.value)
    for place in (tmp_path / "data" / "mnist", tmp_path.parent / "shared" / "data" / "mnist",
                  tmp_path / "repo" / "data" / "mnist", tmp_path / "shared" / "data" / "mnist"):
        assert str(place.resolve()) in msg
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert name in msg
    assert DATA_ENV_VAR in msg and "does not exist" in msg


def test_explicit_directory_lacking_files_is_an_error_not_a_fallback(tmp_path):
    make_mnist(tmp_path / "d", "test")
    with pytest.raises(DataError, match=r"lacks train-images-idx3-ubyte\[\.gz\], train-labels") as err:
        resolve_data_dir(tmp_path / "d")
    assert "the data_dir argument" in str(err.value)
    assert resolve_data_dir(tmp_path / "d", splits=("test",)) == tmp_path / "d"
    assert resolve_data_dir(tmp_path / "d", splits="test") == tmp_path / "d"
    with pytest.raises(ValueError, match="split"):
        resolve_data_dir(tmp_path / "d", splits=("valid",))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is not a directory"):
        resolve_data_dir(tmp_path / "file")


def test_env_variable_is_honoured(tmp_path, monkeypatch):
    make_mnist(tmp_path / "env", "test", n=3)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(splits=["test"]) == tmp_path / "env"
    x, y = load_mnist(split="test")
    assert x.shape == (3, 784) and y.shape == (3,)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(DataError, match=f"environment variable {DATA_ENV_VAR}"):
        resolve_data_dir()
    # An explicit argument beats the environment variable.
    make_mnist(tmp_path / "arg", "test", n=2)
    assert load_mnist(tmp_path / "arg", "test")[0].shape == (2, 784)


def test_default_candidates_relative_to_cwd(tmp_path, monkeypatch):
    make_mnist(tmp_path / "work" / "data" / "mnist", "test", n=2)
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_data_dir(splits=("test",)) == (tmp_path / "work" / "data" / "mnist").resolve()
    make_mnist(tmp_path / "other" / "shared" / "data" / "mnist", "test", n=2)
    (tmp_path / "other" / "proj").mkdir()
    monkeypatch.chdir(tmp_path / "other" / "proj")
    monkeypatch.setattr("linf_opt.data.datasets._PACKAGE_ROOT", tmp_path / "repo")
    assert resolve_data_dir(splits=("test",)) == (tmp_path / "other" / "shared" / "data" / "mnist").resolve()


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_values_and_shapes(tmp_path, gz):
    images, labels = make_mnist(tmp_path, "train", n=6, gz=gz)
    x, y = load_mnist(tmp_path, "train", normalize=False)
    assert x.shape == (6, 784) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    np.testing.assert_allclose(x.numpy(), images.reshape(6, -1) / 255.0, rtol=1e-6)
    xn, _ = load_mnist(tmp_path, "train", flatten=False, dtype=torch.float64)
    assert xn.shape == (6, 1, 28, 28) and xn.dtype == torch.float64
    np.testing.assert_allclose(xn.numpy(), (images[:, None] / 255.0 - MNIST_MEAN) / MNIST_STD, rtol=1e-12)
    xl, yl = load_mnist(tmp_path, "train", limit=4)
    assert xl.shape == (4, 784) and yl.tolist() == labels[:4].tolist()


def test_load_mnist_prefers_raw_but_mixes_forms(tmp_path):
    images, labels = make_mnist(tmp_path, "test", n=3, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)  # raw labels beside gzipped ones
    assert load_mnist(tmp_path, "test")[1].tolist() == labels.tolist()


def test_count_mismatch(tmp_path):
    make_mnist(tmp_path, "test", n=5, n_labels=4)
    with pytest.raises(DataError, match="holds 5 images but .*t10k-labels-idx1-ubyte.gz holds 4 labels"):
        load_mnist(tmp_path, "test")


def test_label_out_of_range(tmp_path):
    make_mnist(tmp_path, "test", n=4, labels=[1, 2, 12, 10])
    with pytest.raises(DataError, match=r"2 labels outside 0\.\.9, the first 12 at index 2"):
        load_mnist(tmp_path, "test")


def test_images_and_labels_swapped(tmp_path):
    images, labels = make_mnist(tmp_path, "test", n=3)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", labels)
    with pytest.raises(DataError, match="wrong IDX magic number 2049"):
        load_mnist(tmp_path, "test")


def test_load_mnist_argument_errors(tmp_path):
    make_mnist(tmp_path, "test", n=2)
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "validation")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit"):
            load_mnist(tmp_path, "test", limit=bad)
    with pytest.raises(TypeError, match="dtype"):
        load_mnist(tmp_path, "test", dtype=torch.int64)


def test_scale_conversions():
    p = torch.tensor([0.0, MNIST_MEAN, 1.0], dtype=torch.float64)
    x = to_normalized(p)
    assert x[1] == 0 and math.isclose(float(x[0]), NORMALIZED_RANGE[0]) and math.isclose(float(x[2]), NORMALIZED_RANGE[1])
    torch.testing.assert_close(to_pixels(x), p)
    np.testing.assert_allclose(to_pixels(to_normalized(np.array([0.25, 0.5]))), [0.25, 0.5])
    # An ℓ∞ ball of radius ε at pixel scale is a ball of radius ε/σ in normalized units.
    u, v = 0.3, 0.4
    assert math.isclose(abs(to_normalized(v) - to_normalized(u)), eps_to_normalized(abs(v - u)))


@pytest.mark.skipif(not REAL_MNIST, reason="real MNIST not present (../shared/data/mnist)")
def test_real_mnist_test_set():
    x, y = load_mnist(REAL_MNIST[0], "test", normalize=False)
    assert x.shape == (10000, 784) and y.shape == (10000,)
    counts = torch.bincount(y, minlength=10)
    assert counts.sum() == 10000 and len(counts) == 10
    assert counts.min() >= 800 and counts.max() <= 1200
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert 0.0 <= float(x.min()) and float(x.max()) == 1.0
    assert abs(float(x.mean()) - MNIST_MEAN) < 0.01  # test mean 0.1325 vs train mean 0.1307


# ---------------------------------------------------------------------------------------------------
# Function estimation
# ---------------------------------------------------------------------------------------------------

def test_function_estimation_shapes_and_values():
    d = function_estimation_data(n_train=50, n_test=11, noise=0.1, seed=3)
    assert d.u_train.shape == d.y_train.shape == (50, 1)
    assert d.u_test.shape == d.y_test.shape == (11, 1)
    assert all(t.dtype == torch.float32 for t in (d.u_train, d.y_train, d.u_test, d.y_test))
    assert float(d.u_train.min()) >= -2 and float(d.u_train.max()) <= 2
    torch.testing.assert_close(d.u_test[:, 0], torch.linspace(-2, 2, 11))
    torch.testing.assert_close(d.y_test, torch.sin(3 * d.u_test) + 0.5 * d.u_test)  # noise-free
    residual = d.y_train - d.target(d.u_train)
    assert 0.05 < float(residual.std()) < 0.2  # noise of σ = 0.1 is there
    assert d.lipschitz == 3.5 and d.interval == (-2.0, 2.0) and d.noise == 0.1 and d.seed == 3


def test_function_estimation_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = function_estimation_data(seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = function_estimation_data(seed=7)
    c = function_estimation_data(seed=8)
    assert torch.equal(a.u_train, b.u_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.u_train, c.u_train)
    d64 = function_estimation_data(seed=7, dtype=torch.float64)
    assert d64.u_train.dtype == torch.float64
    torch.testing.assert_close(d64.u_train.float(), a.u_train)  # same draw in every dtype


def test_function_estimation_noise_free_and_custom_interval():
    d = function_estimation_data(n_train=20, n_test=5, noise=0.0, interval=(0.5, 1.0))
    torch.testing.assert_close(d.y_train, target_function(d.u_train))
    assert float(d.u_train.min()) >= 0.5 and float(d.u_train.max()) <= 1.0


@pytest.mark.parametrize("interval", [(-2.0, 2.0), (0.5, 1.0), (0.2, 0.9), (-5.0, -4.0), (1.0, 1.1)])
def test_target_lipschitz_matches_a_dense_grid(interval):
    grid = np.linspace(*interval, 200001)
    dense = np.abs(target_derivative(grid)).max()
    exact = target_lipschitz(interval)
    assert exact >= dense - 1e-12 and exact - dense < 1e-6
    # and against finite differences of f itself
    u = np.linspace(*interval, 20001)
    slopes = np.abs(np.diff(target_function(u)) / np.diff(u))
    assert slopes.max() <= exact + 1e-9


def test_function_estimation_argument_errors():
    for kw, match in [({"n_train": 0}, "n_train"), ({"n_test": 1.5}, "n_test"), ({"noise": -0.1}, "noise"),
                      ({"interval": (1.0, 1.0)}, "interval"), ({"interval": (0.0,)}, "interval"),
                      ({"noise": float("nan")}, "noise")]:
        with pytest.raises(ValueError, match=match):
            function_estimation_data(**kw)
    with pytest.raises(TypeError, match="dtype"):
        function_estimation_data(dtype=torch.int32)


# ---------------------------------------------------------------------------------------------------
# load_dataset
# ---------------------------------------------------------------------------------------------------

def _data_cfg(**kw):
    base = dict(kind="function_estimation", data_dir="", n_train=30, n_test=7, noise=0.05,
                train_limit=0, test_limit=0)
    return SimpleNamespace(**{**base, **kw})


def test_load_dataset_function_estimation():
    ds = load_dataset(_data_cfg(), seed=4, dtype=torch.float64)
    assert isinstance(ds, Dataset) and ds.task == "regression" and ds.output_dim == 1 and ds.input_dim == 1
    train_x, train_y, test_x, test_y, task = ds
    assert train_x.shape == (30, 1) and test_y.shape == (7, 1) and train_x.dtype == torch.float64
    assert task == "regression" and ds.target_lipschitz == 3.5
    assert torch.equal(train_x, function_estimation_data(n_train=30, n_test=7, seed=4, dtype=torch.float64).u_train)


def test_load_dataset_mnist_with_limits(tmp_path):
    make_mnist(tmp_path, "train", n=6)
    make_mnist(tmp_path, "test", n=5)
    ds = load_dataset(_data_cfg(kind="mnist", data_dir=str(tmp_path), train_limit=4))
    assert ds.task == "classification" and ds.output_dim == 10 and ds.input_dim == 784
    assert ds.train_inputs.shape == (4, 784) and ds.test_inputs.shape == (5, 784)
    assert ds.train_targets.dtype == torch.int64 and ds.target_lipschitz is None


def test_load_dataset_from_problem_uses_its_seed_and_dtype():
    problem = SimpleNamespace(seed=9, dtype="float64", data=_data_cfg())
    ds = load_dataset(problem)
    assert ds.train_inputs.dtype == torch.float64
    assert torch.equal(ds.train_inputs, function_estimation_data(n_train=30, n_test=7, seed=9,
                                                                 dtype=torch.float64).u_train)
    with pytest.raises(ValueError, match="data.kind"):
        load_dataset(_data_cfg(kind="cifar"))
