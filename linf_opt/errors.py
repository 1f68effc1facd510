"""Exception and warning types of linf_opt: one family per kind of failure.

Every error a user can act on derives from :class:`LinfOptError`, so ``except LinfOptError`` catches
them all; the input-validation errors also derive from :class:`ValueError`, so code written against the
usual Python conventions keeps working.

    >>> from linf_opt.errors import ConvergenceError
    >>> issubclass(ConvergenceError, RuntimeError)
    True
"""
from __future__ import annotations


class LinfOptError(Exception):
    """Base class of every exception raised by linf_opt."""


class ShapeError(LinfOptError, ValueError):
    """An argument has the wrong shape (the message names the argument and the expected shape)."""


class NonFiniteError(LinfOptError, ValueError):
    """An argument holds NaN or ±Inf where finite numbers are required."""


class ConfigError(LinfOptError, ValueError):
    """A configuration (dataclass or TOML problem file) is invalid: unknown key, wrong type, bad value."""


class ConvergenceError(LinfOptError, RuntimeError):
    """A fixed-point solver stopped at its iteration limit, or diverged, before reaching its tolerance.

    ``stats`` carries the solver's :class:`~linf_opt.equilibrium.solvers.SolverStats` when available.
    """

    def __init__(self, message: str, stats=None):
        super().__init__(message)
        self.stats = stats


class ProjectionError(LinfOptError, RuntimeError):
    """A projection could not be computed or its result failed the feasibility check.

    ``status`` carries the solver status string for the CVXPY backend (e.g. ``"infeasible"``).
    """

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


class InvariantError(LinfOptError, RuntimeError):
    """A training invariant (e.g. μ∞(A) ≤ γ after the projection) does not hold."""


class DataError(LinfOptError, OSError):
    """A data set is missing, truncated or malformed (the message says what and where it looked)."""


class ConvergenceWarning(UserWarning):
    """Issued instead of :class:`ConvergenceError` when a solver runs in non-strict mode."""
