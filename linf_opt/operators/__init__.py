"""Layer 1: weight operators x ↦ Ax and their matrix measures (μ∞, μ₂, norms, α*)."""
from linf_opt.operators.measures import (average_step, contraction_factor, metzler_majorant, mu_1, mu_2, mu_inf,
                                         norm_inf, norm_inf_rect, optimal_weights, row_measures, spectral_abscissa)

__all__ = ["average_step", "contraction_factor", "metzler_majorant", "mu_1", "mu_2", "mu_inf", "norm_inf",
           "norm_inf_rect", "optimal_weights", "row_measures", "spectral_abscissa"]
from linf_opt.operators.base import ConstraintRows, WeightOperator
from linf_opt.operators.dense import DenseOperator, as_operator
from linf_opt.operators.conv import Conv2dOperator
from linf_opt.operators.block import BlockOperator

__all__ += ["ConstraintRows", "WeightOperator", "DenseOperator", "as_operator", "Conv2dOperator", "BlockOperator"]
