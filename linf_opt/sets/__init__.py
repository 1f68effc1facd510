"""Layer 2: feasible sets of well-posedness conditions, their exact projections and the ℓ2 SDPs."""
from linf_opt.sets.projections import (MuInfProjector, project_conv_kernel, project_mu_2, project_mu_inf,
                                       project_norm_inf, project_operator)
from linf_opt.sets.feasible import (DiagonalMetricSet, FeasibleSet, MonotoneSet, MuInfPolytope, NormInfBall,
                                    PerronFrobeniusSet, WeightedMuInf, available_sets, get_set, register_set)
from linf_opt.sets.sdp import (DiagonalMetricCertificate, SDPTooLargeError, diagonal_metric_certificate,
                               diagonal_metric_value, project_monotone_sdp)

__all__ = ["MuInfProjector", "project_conv_kernel", "project_mu_2", "project_mu_inf", "project_norm_inf", "project_operator",
           "DiagonalMetricSet", "FeasibleSet", "MonotoneSet", "MuInfPolytope", "NormInfBall", "PerronFrobeniusSet",
           "WeightedMuInf", "available_sets", "get_set", "register_set", "DiagonalMetricCertificate",
           "SDPTooLargeError", "diagonal_metric_certificate", "diagonal_metric_value", "project_monotone_sdp"]
