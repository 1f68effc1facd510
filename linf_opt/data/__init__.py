"""Datasets: the MNIST IDX reader, the function-estimation problem, your own data (arrays, torch
datasets and loaders, data factories named in problem files) and random translations of images
(depends only on ``errors``)."""
from linf_opt.data.augment import random_shift, shift_images
from linf_opt.data.datasets import (MNIST_MEAN, MNIST_STD, function_estimation_data, load_dataset, load_mnist,
                                    read_idx, resolve_data_dir, write_idx)
from linf_opt.data.sources import (Dataset, LoaderData, as_data, from_arrays, from_loaders, iterate_batches,
                                   load_factory)

__all__ = ["random_shift", "shift_images", "MNIST_MEAN", "MNIST_STD", "function_estimation_data", "load_dataset",
           "load_mnist", "read_idx", "resolve_data_dir", "write_idx", "Dataset", "LoaderData", "as_data",
           "from_arrays", "from_loaders", "iterate_batches", "load_factory"]
