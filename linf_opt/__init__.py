"""linf_opt: well-posed, robust implicit neural networks through ℓ∞ contraction theory.

    x = Φ(A x + B u + b),   y = C x + D u + c,   well-posed when μ∞(A) < 1.
"""
from .errors import (ConfigError, ConvergenceError, ConvergenceWarning, DataError, InvariantError,
                     LinfOptError, NonFiniteError, ProjectionError, ShapeError)
from .measures import (average_step, contraction_factor, metzler_majorant, mu_1, mu_2, mu_inf, norm_inf,
                       norm_inf_rect, optimal_weights, row_measures, spectral_abscissa)
from .activations import Activation, get_activation, register_activation
from .solvers import SolverStats, get_solver, register_solver, solve_fixed_point
from .implicit import adjoint_solve, equilibrium
from .network import ImplicitNetwork
from .lipschitz import empirical_lipschitz, lipschitz_bound, lipschitz_surrogate
from .config import Problem, load_problem, problem_to_dict
from .data import (MNIST_MEAN, MNIST_STD, function_estimation_data, load_dataset, load_mnist, read_idx,
                   resolve_data_dir, write_idx)
from .projections import (MuInfProjector, project_conv_kernel, project_mu_2, project_mu_inf,
                          project_norm_inf)
from .sets import (FeasibleSet, MonotoneSet, MuInfPolytope, NormInfBall, available_sets, get_set,
                   register_set)
from .sets import DiagonalMetricSet, PerronFrobeniusSet, WeightedMuInf
from .sdp import (DiagonalMetricCertificate, SDPTooLargeError, diagonal_metric_certificate,
                  diagonal_metric_value, project_monotone_sdp)
from .parametrizations import MonotoneParametrization, MuInfParametrization, apply_parametrization
from .input_space import InputSpace
from .attacks import attack_accuracy, fgsm, pgd
from .certify import CertifyResult, ReachableBox, reachable_box   # the module linf_opt.certify keeps its name
from .robust_training import robust_loss, robust_schedule
from .training import NonFiniteLossError, Trainer, TrainResult, evaluate, load_run, train

__version__ = "0.1.0"
