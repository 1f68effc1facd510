"""The toolkit's plots under the name the notebooks use: :mod:`linf_opt.plots`, re-exported.

Every figure the library draws lives in :mod:`linf_opt.plots` (layer 0, so that the comparison studies
and the reports draw with the same functions, labels and units); ``from linf_opt.reports import plots``
gives the same functions.

    >>> from linf_opt.reports import plots
    >>> fig = plots.plot_training_curves(result.history, gamma=0.95); fig.savefig("curves.png")
"""
from linf_opt.plots import *          # noqa: F401,F403
from linf_opt.plots import __all__    # noqa: F401
