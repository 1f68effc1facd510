"""Layer 4: implicit networks as ``torch.nn.Module``, their ℓ∞ Lipschitz bounds and reparametrizations."""
from linf_opt.models.implicit_network import ImplicitNetwork
from linf_opt.models.lipschitz import empirical_lipschitz, lipschitz_bound, lipschitz_surrogate
from linf_opt.models.parametrizations import MonotoneParametrization, MuInfParametrization, apply_parametrization

__all__ = ["ImplicitNetwork", "empirical_lipschitz", "lipschitz_bound", "lipschitz_surrogate",
           "MonotoneParametrization", "MuInfParametrization", "apply_parametrization"]
