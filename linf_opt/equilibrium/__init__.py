"""Layer 3: slope-restricted activations, fixed-point solvers (one signature, one registry) and exact
implicit differentiation through the equilibrium."""
from linf_opt.equilibrium.activations import Activation, get_activation, register_activation
from linf_opt.equilibrium.solvers import SolverStats, get_solver, register_solver
from linf_opt.equilibrium.implicit import adjoint_solve, equilibrium, solve_fixed_point

__all__ = ["Activation", "get_activation", "register_activation", "SolverStats", "get_solver", "register_solver",
           "adjoint_solve", "equilibrium", "solve_fixed_point"]
