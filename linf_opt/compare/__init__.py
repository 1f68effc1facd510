"""Layer 7: comparing the feasible sets of competing well-posedness conditions (containment, slices,
volumes, distances, training under each set) and the report behind ``linf-opt compare``.

One module per study (``sets``, ``containment``, ``slices``, ``volume``, ``distance``,
``training_study``) and :mod:`linf_opt.compare.studies`, the report; every public name is importable
from here, e.g. ``from linf_opt.compare import containment_study, default_ensembles``."""
from linf_opt.compare.studies import *  # noqa: F401,F403 (the public names of every study)
from linf_opt.compare.studies import __all__  # noqa: F401
