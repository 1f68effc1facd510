"""Implicit layers in your own modules (linf_opt/models/layers.py) and the constraint in your own loop
(linf_opt/models/constraint.py)."""
import pytest
import torch
from torch import nn

import linf_opt as lo
from linf_opt import InvariantError


def dense_model(gamma=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(),
                         lo.ImplicitLayer(5, 12, gamma=gamma, tol=1e-8, generator=g, dtype=torch.float64),
                         nn.Linear(12, 2)).double()


def conv_model(gamma=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return nn.Sequential(lo.ConvImplicitLayer(1, 3, (6, 6), gamma=gamma, tol=1e-8, generator=g, dtype=torch.float64),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(27, 2)).double()


def test_layers_return_the_equilibrium_state():
    layer = lo.ImplicitLayer(4, 10, gamma=0.9, tol=1e-10, dtype=torch.float64)
    u = torch.randn(7, 4, dtype=torch.float64)
    x = layer(u)
    assert x.shape == (7, 10) and layer(u[0]).shape == (10,)
    torch.testing.assert_close(x, torch.relu(x @ layer.A.t() + u @ layer.B.t() + layer.b), atol=1e-8, rtol=0)
    x_eq, _ = layer.equilibrium(u)
    torch.testing.assert_close(x, x_eq)
    assert not any(n in dict(layer.named_parameters()) for n in ("C", "c"))
    conv = lo.ConvImplicitLayer(2, 4, (8, 8), gamma=0.9)
    assert conv(torch.randn(3, 2, 8, 8)).shape == (3, 4, 8, 8)
    assert lo.ConvImplicitLayer(1, 4, (8, 8), stride=2)(torch.randn(3, 1, 8, 8)).shape == (3, 4, 4, 4)


def test_layer_gradients_are_exact():
    layer = lo.ImplicitLayer(2, 4, gamma=0.7, tol=1e-13, backward_tol=1e-13, dtype=torch.float64,
                             activation="tanh")
    u = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: layer(v), (u,), atol=1e-6)


def test_layer_certificate_is_the_state_lipschitz_bound():
    layer = lo.ImplicitLayer(3, 8, gamma=0.5, dtype=torch.float64)
    L = float(layer.lipschitz_bound().detach())
    assert L == pytest.approx(float(layer.B.detach().abs().sum(1).max()) / (1 - float(lo.mu_inf(layer.A.detach()))))
    assert lo.empirical_lipschitz(layer, torch.randn(16, 3, dtype=torch.float64), steps=20)[0] <= L + 1e-9


def test_layer_arguments_of_a_readout_are_refused():
    with pytest.raises(TypeError, match="read-out"):
        lo.ImplicitLayer(2, 3, out_features=4)
    with pytest.raises(TypeError, match="read-out"):
        lo.ConvImplicitLayer(1, 2, (4, 4), pool=2)


@pytest.mark.parametrize("make", [dense_model, conv_model], ids=["dense", "conv"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("style", ["project_", "hook"])
def test_mu_inf_holds_after_every_step_in_a_plain_loop(make, opt_name, style):
    torch.manual_seed(1)
    model = make(gamma=0.8)
    layer = lo.implicit_modules(model)[0][1]
    opt = (torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9) if opt_name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.1))
    constraint = lo.keep_well_posed(model, optimizer=opt if style == "hook" else None)
    U = torch.randn(16, *layer.input_shape, dtype=torch.float64) if make is conv_model else torch.randn(16, 3).double()
    T = torch.randint(0, 2, (16,))
    left = 0
    for _ in range(6):
        opt.zero_grad()
        nn.functional.cross_entropy(model(U), T).backward()
        opt.step()
        if style == "project_":
            left += float(layer.operator.mu_inf().detach()) > 0.8 + 1e-9    # the step alone leaves the set
            constraint.project_()
        assert float(layer.operator.mu_inf().detach()) <= 0.8 + 1e-9
        assert constraint.check()
    assert constraint.steps == 6
    if style == "project_":
        assert left > 0       # so the projection did the work
    constraint.remove()


def test_keep_well_posed_finds_every_layer_and_uses_their_gammas():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = lo.ImplicitLayer(2, 6, gamma=0.9)
            self.blocks = nn.ModuleList([lo.ImplicitLayer(6, 6, gamma=0.5)])
            self.head = lo.ImplicitNetwork(6, 4, 1, gamma=0.7)

        def forward(self, u):
            return self.head(self.blocks[0](self.first(u)))

    net = Net()
    c = lo.keep_well_posed(net)
    assert [n for n, _ in c.modules] == ["first", "blocks.0", "head"] and c.gammas == [0.9, 0.5, 0.7]
    assert lo.keep_well_posed(net, gamma=0.3).gammas == [0.3] * 3
    with torch.no_grad():
        net.blocks[0].A.add_(1.0)
    with pytest.raises(InvariantError, match="blocks.0"):
        c.check()
    c.project_()
    assert c.mu()["blocks.0"] <= 0.5 + 1e-6
    assert lo.keep_well_posed(net.head).modules[0][0] == ""


def test_hook_with_check_and_removal():
    model = dense_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    c = lo.keep_well_posed(model, optimizer=opt, check=True)
    assert "hooked" in repr(c)
    c.remove()
    with torch.no_grad():
        model[2].A.add_(1.0)
    opt.step()        # no hook any more: nothing projected
    assert c.steps == 0 and float(lo.mu_inf(model[2].A.detach())) > 0.8


def test_keep_well_posed_errors():
    with pytest.raises(ValueError, match="no implicit layer"):
        lo.keep_well_posed(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        lo.keep_well_posed([lo.ImplicitLayer(2, 2)])
    with pytest.raises(ValueError, match="gamma"):
        lo.keep_well_posed(lo.ImplicitLayer(2, 2), gamma=1.5)
    with pytest.raises(TypeError, match="Optimizer"):
        lo.keep_well_posed(lo.ImplicitLayer(2, 2), optimizer="adam")
    authors = lo.ConvImplicitNetwork(1, 2, (4, 4), 2, construction="authors")
    with pytest.raises(ValueError, match="authors"):
        lo.keep_well_posed(authors)


def test_weighted_layer_is_projected_in_its_weighted_measure():
    eta = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)
    layer = lo.ImplicitLayer(2, 6, gamma=0.6, eta=eta, dtype=torch.float64)
    with torch.no_grad():
        layer.A.add_(torch.randn(6, 6, dtype=torch.float64))
    lo.keep_well_posed(layer).project_()
    assert float(lo.mu_inf(layer.A.detach(), eta)) <= 0.6 + 1e-9
