"""Layer 8 (with ``cli``): reports that read trained runs, e.g. the robustness report behind ``linf-opt certify``.

``linf_opt.reports.plots`` is the public name of :mod:`linf_opt.plots`, where every figure is drawn."""
from linf_opt.reports.plots import *   # noqa: F401,F403
from linf_opt.reports.plots import __all__ as _plots_all

__all__ = list(_plots_all)
