"""linf_opt: well-posed, robust implicit neural networks through ℓ∞ contraction theory.

    x = Φ(A x + B u + b),   y = C x + D u + c,   well-posed when μ∞(A) < 1.

The package is layered; each subpackage imports only from the ones listed before it:

====================  =====================================================================
``operators``          weight operators x ↦ Ax (dense, convolution) and their matrix measures
``sets``               feasible sets (μ∞ polytope, norm ball, monotone, …) and exact projections
``equilibrium``        activations, fixed-point solvers, implicit differentiation
``models``             implicit networks (``nn.Module``), Lipschitz bounds, reparametrizations
``data``               datasets (MNIST IDX, function estimation)
``robustness``         input spaces, attacks, certificates, the certified-robust loss
``training``           problem files (config), checkpoints, the projected-gradient trainer
``compare``            the feasible-set comparison studies and their report
``reports``, ``cli``   the robustness report and the ``linf-opt`` command
====================  =====================================================================

Every public name is importable from ``linf_opt`` itself.
"""
from linf_opt.errors import (ConfigError, ConvergenceError, ConvergenceWarning, DataError, InvariantError,
                             LinfOptError, NonFiniteError, ProjectionError, ShapeError)
from linf_opt.operators import *          # noqa: F401,F403
from linf_opt.sets import *               # noqa: F401,F403
from linf_opt.equilibrium import *        # noqa: F401,F403
from linf_opt.models import *             # noqa: F401,F403
from linf_opt.data import *               # noqa: F401,F403
from linf_opt.robustness import *         # noqa: F401,F403
from linf_opt.training import *           # noqa: F401,F403

__version__ = "0.1.0"
