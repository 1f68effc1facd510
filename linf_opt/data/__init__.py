"""Datasets: the MNIST IDX reader and the function-estimation problem (depends only on ``errors``)."""
from linf_opt.data.datasets import (MNIST_MEAN, MNIST_STD, function_estimation_data, load_dataset, load_mnist,
                                    read_idx, resolve_data_dir, write_idx)

__all__ = ["MNIST_MEAN", "MNIST_STD", "function_estimation_data", "load_dataset", "load_mnist", "read_idx",
           "resolve_data_dir", "write_idx"]
