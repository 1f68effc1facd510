"""Layer 4: implicit models as ``torch.nn.Module`` (dense, convolutional), their ℓ∞ Lipschitz bounds and
reparametrizations; implicit layers for your own modules and the constraint for your own loop."""
from linf_opt.models.base import ImplicitModel
from linf_opt.models.implicit_network import ImplicitNetwork
from linf_opt.models.conv_network import AuthorsConvKernel, ConvImplicitNetwork
from linf_opt.models.layers import ConvImplicitLayer, ImplicitLayer
from linf_opt.models.constraint import WellPosedConstraint, implicit_modules, keep_well_posed
from linf_opt.models.lipschitz import empirical_lipschitz, lipschitz_bound, lipschitz_surrogate
from linf_opt.models.parametrizations import MonotoneParametrization, MuInfParametrization, apply_parametrization

__all__ = ["ImplicitModel", "ImplicitNetwork", "ConvImplicitNetwork", "AuthorsConvKernel", "empirical_lipschitz",
           "lipschitz_bound", "lipschitz_surrogate", "MonotoneParametrization", "MuInfParametrization",
           "apply_parametrization", "ImplicitLayer", "ConvImplicitLayer", "keep_well_posed", "WellPosedConstraint",
           "implicit_modules"]
