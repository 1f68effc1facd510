"""Data sets of the reference experiments (docs/mathematics.md §9): MNIST from IDX files, and function estimation.

Everything is held in memory as torch tensors; nothing is downloaded and nothing is cached on disk.

- :func:`read_idx` / :func:`write_idx`: the IDX format of MNIST (raw or gzip-compressed), with the
  header and the payload size checked exactly.
- :func:`resolve_data_dir` and :func:`load_mnist`: find and load MNIST. Pixels are scaled to [0, 1]
  and, by default, normalized as x = (p − 0.1307) / 0.3081. Attack radii are stated at pixel scale;
  :func:`eps_to_normalized` and :data:`NORMALIZED_RANGE` convert them.
- :func:`function_estimation_data`: the no-download regression problem f(u) = sin(3u) + 0.5u.
- :func:`load_dataset`: one entry point for the trainer, driven by the ``[data]`` configuration
  (including ``kind = "python"``: a data factory of your own, :mod:`linf_opt.data.sources`).

    >>> from linf_opt.data.datasets import function_estimation_data
    >>> d = function_estimation_data(n_train=8, n_test=5); d.u_train.shape, d.lipschitz
    (torch.Size([8, 1]), 3.5)
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from linf_opt.data.sources import Dataset, LoaderData, call_factory
from linf_opt.errors import DataError

__all__ = [
    "read_idx", "write_idx", "IDX_MAGIC_IMAGES", "IDX_MAGIC_LABELS",
    "resolve_data_dir", "mnist_file_names", "load_mnist", "DATA_ENV_VAR",
    "MNIST_MEAN", "MNIST_STD", "MNIST_CLASSES", "NORMALIZED_RANGE",
    "to_normalized", "to_pixels", "eps_to_normalized",
    "target_function", "target_derivative", "target_lipschitz", "function_estimation_data",
    "FunctionEstimationData", "Dataset", "load_dataset",
]

# ---------------------------------------------------------------------------------------------------
# IDX format
# ---------------------------------------------------------------------------------------------------
# Header: two zero bytes, a type code, the number of dimensions d; then d big-endian uint32 sizes;
# then the entries, big-endian, in C order. MNIST images are 0x00000803 = 2051, labels 0x00000801 = 2049.

IDX_MAGIC_IMAGES = 2051
IDX_MAGIC_LABELS = 2049

_IDX_TYPES: dict[int, tuple[str, np.dtype]] = {
    0x08: ("unsigned byte", np.dtype(">u1")),
    0x09: ("signed byte", np.dtype(">i1")),
    0x0B: ("short (int16)", np.dtype(">i2")),
    0x0C: ("int (int32)", np.dtype(">i4")),
    0x0D: ("float (float32)", np.dtype(">f4")),
    0x0E: ("double (float64)", np.dtype(">f8")),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _describe_magic(magic: int) -> str:
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    kind = _IDX_TYPES[code][0] if code in _IDX_TYPES else f"unknown type code 0x{code:02X}"
    return f"{kind}, {ndim} dimension{'' if ndim == 1 else 's'}"


def _shape_text(dims: Sequence[int]) -> str:
    return "×".join(str(d) for d in dims)


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's content, decompressed if it starts with the gzip magic bytes; and whether it was."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a directory, expected an IDX file") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if raw[:2] != _GZIP_MAGIC:
        # The magic bytes decide, not the suffix: browsers sometimes store decompressed data as .gz.
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def read_idx(path: str | os.PathLike, *, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a numpy array of native byte order.

    The layout is: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions d, d big-endian uint32 sizes, then exactly
    ∏ sizes entries, big-endian. Compression is detected from the gzip magic bytes, not the suffix.
    ``expect_magic`` (e.g. :data:`IDX_MAGIC_IMAGES` = 2051, :data:`IDX_MAGIC_LABELS` = 2049) also
    requires that exact type code and number of dimensions.

    Raises :class:`DataError`, naming the file, for a missing or unreadable file, a corrupt gzip
    stream, a wrong magic number, an unknown type code, a truncated header or payload, and trailing
    bytes after the payload.

        >>> write_idx(tmp / "x.idx.gz", np.arange(6, dtype=np.uint8).reshape(2, 3))
        >>> read_idx(tmp / "x.idx.gz").shape
        (2, 3)
    """
    path = Path(path)
    data, compressed = _read_bytes(path)
    where = f"{path}{' (after decompression)' if compressed else ''}"
    if len(data) < 4:
        raise DataError(f"{where}: truncated IDX header: {len(data)} byte{'' if len(data) == 1 else 's'}, "
                        f"shorter than the 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{where}: not an IDX file: magic number 0x{magic:08X} does not start with two zero "
                        f"bytes (IDX starts 00 00 <type code> <number of dimensions>)")
    if expect_magic is not None and magic != expect_magic:
        raise DataError(f"{where}: wrong IDX magic number {magic} ({_describe_magic(magic)}); "
                        f"expected {expect_magic} ({_describe_magic(expect_magic)})")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02X} {name}" for c, (name, _) in _IDX_TYPES.items())
        raise DataError(f"{where}: unknown IDX type code 0x{code:02X}; known codes: {known}")
    if ndim == 0:
        raise DataError(f"{where}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: truncated IDX header: {ndim} dimensions need a {header}-byte header, "
                        f"the file has {len(data)} bytes")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    name, dtype = _IDX_TYPES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    payload = len(data) - header
    declared = (f"header declares shape {_shape_text(dims)} of {name} = {expected} bytes of data "
                f"after the {header}-byte header")
    if payload < expected:
        raise DataError(f"{where}: truncated IDX file: {declared}, but only {payload} bytes follow "
                        f"({expected - payload} missing)")
    if payload > expected:
        raise DataError(f"{where}: {payload - expected} unexpected trailing bytes: {declared}, "
                        f"but {payload} bytes follow")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def write_idx(path: str | os.PathLike, array: Any) -> Path:
    """Write ``array`` (numpy or torch) as an IDX file; gzip-compressed when the name ends in ``.gz``.

    The type code follows the array's dtype: uint8, int8, int16, int32, float32 or float64; any other
    dtype raises ``TypeError`` (cast explicitly, e.g. labels with ``.astype(np.uint8)``, so that no
    value is silently changed). The gzip header carries no time stamp, so output is reproducible.
    Returns the path written.

        >>> write_idx("labels.idx1-ubyte.gz", np.array([3, 1, 4], dtype=np.uint8))
    """
    path = Path(path)
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    codes = {dt.newbyteorder("=").str: code for code, (_, dt) in _IDX_TYPES.items()}
    key = array.dtype.newbyteorder("=").str
    if key not in codes:
        supported = ", ".join(str(dt.newbyteorder("=")) for _, dt in _IDX_TYPES.values())
        raise TypeError(f"write_idx: IDX cannot store dtype {array.dtype}; supported: {supported}")
    if array.ndim == 0:
        raise ValueError("write_idx: IDX needs at least one dimension, got a 0-d array")
    if any(d >= 2 ** 32 for d in array.shape):
        raise ValueError(f"write_idx: IDX sizes are uint32, got shape {array.shape}")
    code = codes[key]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=_IDX_TYPES[code][1]).tobytes()
    content = header + payload
    if path.suffix == ".gz":
        content = gzip.compress(content, mtime=0)
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------------------

MNIST_MEAN = 0.1307
"""Mean pixel value of the MNIST training set at pixel scale [0, 1]."""
MNIST_STD = 0.3081
"""Standard deviation of the MNIST training pixels at pixel scale [0, 1]."""
MNIST_CLASSES = 10
NORMALIZED_RANGE = ((0.0 - MNIST_MEAN) / MNIST_STD, (1.0 - MNIST_MEAN) / MNIST_STD)
"""The pixel range [0, 1] in normalized units, ≈ (−0.4242, 2.8215): the box an attack clips to."""
DATA_ENV_VAR = "LINF_OPT_DATA"

_MNIST_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_SPLITS = ("train", "test")
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the repository root in a source checkout


def to_normalized(pixels):
    """Pixel scale → normalized scale: x = (p − 0.1307) / 0.3081 (tensors, arrays or floats)."""
    return (pixels - MNIST_MEAN) / MNIST_STD


def to_pixels(normalized):
    """Normalized scale → pixel scale: p = 0.3081 x + 0.1307 (the inverse of :func:`to_normalized`)."""
    return normalized * MNIST_STD + MNIST_MEAN


def eps_to_normalized(eps):
    """An ℓ∞ radius ε at pixel scale in normalized units: ε / 0.3081 (a shift does not change radii).

        >>> round(eps_to_normalized(0.1), 4)
        0.3246
    """
    return eps / MNIST_STD


def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return split


def mnist_file_names(split: str) -> tuple[str, str]:
    """The IDX file names (without ``.gz``) of one MNIST split: ``(images, labels)``."""
    _check_split(split)
    return _MNIST_STEMS[(split, "images")], _MNIST_STEMS[(split, "labels")]


def _find_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem`` if present (uncompressed reads faster), else ``directory/stem.gz``, else None."""
    for name in (stem, stem + ".gz"):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _candidates(data_dir) -> list[tuple[Path, str]]:
    if data_dir is not None and str(data_dir) != "":
        return [(Path(data_dir).expanduser(), "the data_dir argument")]
    env = os.environ.get(DATA_ENV_VAR, "")
    if env:
        return [(Path(env).expanduser(), f"environment variable {DATA_ENV_VAR}")]
    cwd = Path.cwd()
    found: list[tuple[Path, str]] = []
    for base, origin in ((cwd, "working directory"), (_PACKAGE_ROOT, "repository root")):
        for rel in ("data/mnist", "../shared/data/mnist"):
            path = (base / rel).resolve()
            if all(path != p for p, _ in found):
                found.append((path, f"./{rel} relative to the {origin}"))
    return found


def resolve_data_dir(data_dir: str | os.PathLike | None = None, *,
                     splits: Sequence[str] = _SPLITS) -> Path:
    """The directory that holds the MNIST IDX files of ``splits`` (raw or ``.gz``).

    Looks, in order, only at: ``data_dir`` when given (non-empty); else the directory named by the
    environment variable ``LINF_OPT_DATA`` when set; else ``./data/mnist`` and ``../shared/data/mnist``
    relative to the working directory, then the same two relative to the repository root (the parent
    of the package folder). An explicit ``data_dir`` or ``LINF_OPT_DATA`` that lacks the files is an
    error, not a reason to look elsewhere.

    Raises :class:`DataError` listing every place it looked, why each failed, and the file names it
    expected.

        >>> resolve_data_dir("../shared/data/mnist")
        PosixPath('../shared/data/mnist')
    """
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    for split in splits:
        _check_split(split)
    stems = [_MNIST_STEMS[(s, kind)] for s in splits for kind in ("images", "labels")]
    failures = []
    for path, origin in _candidates(data_dir):
        if not path.exists():
            reason = "does not exist"
        elif not path.is_dir():
            reason = "is not a directory"
        else:
            missing = [stem for stem in stems if _find_file(path, stem) is None]
            if not missing:
                return path
            reason = "lacks " + ", ".join(f"{m}[.gz]" for m in missing)
        failures.append(f"  {path}  ({origin}): {reason}")
    expected = ", ".join(f"{s}[.gz]" for s in stems)
    raise DataError(
        "MNIST data not found. Expected the IDX files " + expected + " (raw or gzip-compressed) in one of:\n"
        + "\n".join(failures)
        + f"\nPass data_dir=..., set the environment variable {DATA_ENV_VAR}, or set data_dir in the [data] "
          "table of the problem file.")


def load_mnist(data_dir: str | os.PathLike | None = None, split: str = "train", *, normalize: bool = True,
               flatten: bool = True, limit: int | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one MNIST split as ``(inputs, labels)`` tensors, in memory.

    inputs: pixels p ∈ [0, 1] (the uint8 value / 255), or x = (p − MNIST_MEAN) / MNIST_STD when
    ``normalize``; shape (N, 784) when ``flatten``, else (N, 1, 28, 28); dtype ``dtype``.
    labels: int64 class indices in 0..9, shape (N,). ``limit`` keeps the first ``limit`` samples.
    The directory is found by :func:`resolve_data_dir`; each file may be raw or ``.gz``.

    Raises :class:`DataError` when the files are missing or malformed (see :func:`read_idx`), when the
    image and label counts differ, or when a label lies outside 0..9.

        >>> x, y = load_mnist(split="test", limit=100); x.shape, y.shape
        (torch.Size([100, 784]), torch.Size([100]))
    """
    _check_split(split)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected a positive int or None (all samples), got {limit!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a floating torch dtype, got {dtype!r}")
    directory = resolve_data_dir(data_dir, splits=(split,))
    image_path = _find_file(directory, _MNIST_STEMS[(split, "images")])
    label_path = _find_file(directory, _MNIST_STEMS[(split, "labels")])
    images = read_idx(image_path, expect_magic=IDX_MAGIC_IMAGES)
    labels = read_idx(label_path, expect_magic=IDX_MAGIC_LABELS)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"MNIST {split} split: {image_path} holds {images.shape[0]} images but {label_path} "
                        f"holds {labels.shape[0]} labels")
    bad = np.flatnonzero(labels >= MNIST_CLASSES)
    if bad.size:
        raise DataError(f"{label_path}: {bad.size} label{'' if bad.size == 1 else 's'} outside 0..9, the first "
                        f"{int(labels[bad[0]])} at index {int(bad[0])}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    inputs = torch.from_numpy(images).to(dtype).div_(255.0)
    if normalize:
        inputs = inputs.sub_(MNIST_MEAN).div_(MNIST_STD)
    inputs = inputs.reshape(len(inputs), -1) if flatten else inputs.unsqueeze(1)
    return inputs, torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------------------------------------------
# Function estimation (docs/mathematics.md §9)
# ---------------------------------------------------------------------------------------------------

def target_function(u):
    """f(u) = sin(3u) + 0.5 u, elementwise, for a torch tensor, a numpy array or a float."""
    if isinstance(u, torch.Tensor):
        return torch.sin(3 * u) + 0.5 * u
    return np.sin(3 * np.asarray(u, dtype=float)) + 0.5 * np.asarray(u, dtype=float)


def target_derivative(u):
    """f′(u) = 3 cos(3u) + 0.5, elementwise."""
    if isinstance(u, torch.Tensor):
        return 3 * torch.cos(3 * u) + 0.5
    return 3 * np.cos(3 * np.asarray(u, dtype=float)) + 0.5


def target_lipschitz(interval: tuple[float, float] = (-2.0, 2.0)) -> float:
    """Lipschitz constant of f on [lo, hi]: max |f′(u)| over the interval, computed exactly.

    |f′| is largest where f′ is extremal: at an endpoint or where f″(u) = −9 sin(3u) = 0, i.e.
    u = kπ/3. On any interval containing 0 this is |f′(0)| = 3.5.
    """
    lo, hi = _check_interval(interval)
    k = np.arange(math.ceil(3 * lo / math.pi), math.floor(3 * hi / math.pi) + 1)
    points = np.concatenate([[lo, hi], k * math.pi / 3])
    return float(np.max(np.abs(target_derivative(points))))


def _check_interval(interval) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"interval: expected a pair (low, high) of numbers, got {interval!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"interval: expected finite low < high, got ({lo}, {hi})")
    return lo, hi


@dataclass(frozen=True)
class FunctionEstimationData:
    """The function-estimation problem of docs/mathematics.md §9: samples of f(u) = sin(3u) + 0.5u.

    u_train, y_train: (n_train, 1), u uniform on ``interval``, y = f(u) + N(0, noise²).
    u_test, y_test: (n_test, 1), an evenly spaced grid over ``interval`` (endpoints included), y = f(u)
    without noise. ``target`` is f itself and ``lipschitz`` = max |f′| on the interval (3.5 on [−2, 2]).
    """

    u_train: torch.Tensor
    y_train: torch.Tensor
    u_test: torch.Tensor
    y_test: torch.Tensor
    interval: tuple[float, float]
    noise: float
    seed: int
    lipschitz: float

    @staticmethod
    def target(u):
        """The noise-free target f(u) = sin(3u) + 0.5u (same as :func:`target_function`)."""
        return target_function(u)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def function_estimation_data(n_train: int = 200, n_test: int = 1000, noise: float = 0.05,
                             interval: tuple[float, float] = (-2.0, 2.0), seed: int = 0,
                             dtype: torch.dtype = torch.float32) -> FunctionEstimationData:
    """Samples of f(u) = sin(3u) + 0.5u for the function-estimation experiment (docs/mathematics.md §9).

    Training inputs are uniform on ``interval`` with targets f(u) + ε, ε ~ N(0, noise²); test inputs
    are ``n_test`` evenly spaced points with noise-free targets. The draw is made in float64 with a
    private ``torch.Generator`` seeded by ``seed`` (the global RNG is untouched), then cast to
    ``dtype``, so the same seed gives the same points in every dtype.

        >>> d = function_estimation_data(seed=1); d.u_train.shape, d.u_test.shape
        (torch.Size([200, 1]), torch.Size([1000, 1]))
    """
    n_train = _check_count(n_train, "n_train")
    n_test = _check_count(n_test, "n_test")
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: expected a finite standard deviation ≥ 0, got {noise}")
    lo, hi = _check_interval(interval)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a floating torch dtype, got {dtype!r}")
    gen = torch.Generator().manual_seed(int(seed))
    u_train = lo + (hi - lo) * torch.rand(n_train, 1, generator=gen, dtype=torch.float64)
    y_train = target_function(u_train) + noise * torch.randn(n_train, 1, generator=gen, dtype=torch.float64)
    u_test = torch.linspace(lo, hi, n_test, dtype=torch.float64).unsqueeze(1)
    y_test = target_function(u_test)
    return FunctionEstimationData(
        u_train=u_train.to(dtype), y_train=y_train.to(dtype), u_test=u_test.to(dtype), y_test=y_test.to(dtype),
        interval=(lo, hi), noise=noise, seed=int(seed), lipschitz=target_lipschitz((lo, hi)))


# ---------------------------------------------------------------------------------------------------
# One entry point for the trainer
# ---------------------------------------------------------------------------------------------------

def _check_same_image_size(data_dir, train_inputs: torch.Tensor, test_inputs: torch.Tensor) -> None:
    """Raise :class:`DataError`, naming both image files, when the test images differ in size from the
    training images (found when the data are loaded, not after an epoch of training)."""
    if tuple(train_inputs.shape[1:]) == tuple(test_inputs.shape[1:]):
        return
    directory = resolve_data_dir(data_dir)
    files = {split: _find_file(directory, _MNIST_STEMS[(split, "images")]) for split in _SPLITS}
    sizes = {split: _shape_text(read_idx(files[split], expect_magic=IDX_MAGIC_IMAGES).shape[1:]) for split in _SPLITS}
    raise DataError(f"{files['test']}: the test images are {sizes['test']} pixels, but the training images "
                    f"({files['train']}) are {sizes['train']}: both splits must have images of one size")


def load_dataset(data: Any, *, seed: int | None = None, dtype: torch.dtype | str | None = None,
                 batch_size: int | None = None) -> Dataset | LoaderData:
    """Load the data a ``[data]`` configuration section describes (``DataConfig`` or a ``Problem``).

    ``kind = "function_estimation"``: :func:`function_estimation_data` with ``n_train``, ``n_test`` and
    ``noise`` (task "regression", output_dim 1). ``kind = "mnist"``: :func:`load_mnist`, normalized and
    flattened, from ``data_dir`` ("" = :func:`resolve_data_dir`'s search), keeping the first
    ``train_limit`` / ``test_limit`` samples (0 = all) (task "classification", output_dim 10).
    ``kind = "python"``: the function named by ``factory`` (``"package.module:function"``), called with
    the ``[data]`` section (see :func:`linf_opt.data.sources.call_factory`); it may return any accepted
    data form, so the result is a :class:`Dataset` or, for loaders, a
    :class:`~linf_opt.data.sources.LoaderData`.
    Given a whole ``Problem``, its ``seed``, ``dtype`` and ``training.batch_size`` are the defaults;
    otherwise 0, float32 and 100.

        >>> train_x, train_y, test_x, test_y, task = load_dataset(load_problem("problems/mnist_fc.toml"))
    """
    if hasattr(data, "data") and hasattr(data, "seed"):  # a whole Problem
        seed = data.seed if seed is None else seed
        dtype = getattr(data, "dtype", None) if dtype is None else dtype
        training = getattr(data, "training", None)
        batch_size = getattr(training, "batch_size", None) if batch_size is None else batch_size
        data = data.data
    batch_size = 100 if batch_size is None else batch_size
    seed = 0 if seed is None else seed
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, dtype)
    dtype = torch.float32 if dtype is None else dtype
    kind = getattr(data, "kind", None)
    if kind == "function_estimation":
        d = function_estimation_data(n_train=data.n_train, n_test=data.n_test, noise=data.noise, seed=seed,
                                     dtype=dtype)
        return Dataset(d.u_train, d.y_train, d.u_test, d.y_test, "regression", 1, d.lipschitz)
    if kind == "mnist":
        data_dir = data.data_dir or None
        train = load_mnist(data_dir, "train", limit=data.train_limit or None, dtype=dtype)
        test = load_mnist(data_dir, "test", limit=data.test_limit or None, dtype=dtype)
        _check_same_image_size(data_dir, train[0], test[0])
        return Dataset(*train, *test, "classification", MNIST_CLASSES)
    if kind == "python":
        return call_factory(data.factory, data, seed=seed, dtype=dtype, batch_size=batch_size)
    raise ValueError(f"data.kind: expected 'function_estimation', 'mnist' or 'python', got {kind!r}")
