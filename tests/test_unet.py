"""The conversion-ready U-Net: shapes, argument errors, and SpikingJelly 2.0 FX conversion."""

import pytest
import torch
from conftest import trained_like
from spikingjelly.activation_based import functional, neuron
from spikingjelly.activation_based.ann2snn import FXConverter, RateCodingRecipe
from torch import nn

from bundle.networks import ConvertibleUNet, divisor


@pytest.mark.parametrize(
    "spatial_dims, channels, shape",
    [
        (2, (4, 8), (16, 24)),
        (2, (4, 8, 16, 32), (48, 64)),
        (3, (4, 8, 16), (16, 24, 16)),
        (3, (4, 8, 16, 32), (48, 64, 48)),
    ],
)
def test_output_shape(spatial_dims, channels, shape):
    net = ConvertibleUNet(spatial_dims, in_channels=1, out_channels=3, channels=channels).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, *shape))
    assert out.shape == (2, 3, *shape)
    assert divisor(channels) == 2 ** (len(channels) - 1)


@pytest.mark.parametrize("kwargs", [{"spatial_dims": 1}, {"channels": (8,)}, {"channels": (8, 0)}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="spatial_dims|channels"):
        ConvertibleUNet(**kwargs)


def test_every_activation_is_its_own_relu_module():
    """The converter gives each ReLU module its own threshold: a ReLU called at two places would share one."""
    net = ConvertibleUNet(3, channels=(4, 8, 16))
    relus = {name for name, m in net.named_modules() if isinstance(m, nn.ReLU)}
    calls = [n.target for n in torch.fx.symbolic_trace(net).graph.nodes if n.op == "call_module" and n.target in relus]
    assert len(calls) == len(set(calls)) == len(relus) == 2 + 3 * 2 + 3 * 2  # stem, downs, ups
    functional = [n for n in torch.fx.symbolic_trace(net).graph.nodes if n.op != "call_module" and "relu" in str(n.target)]
    assert not functional  # no F.relu the converter would miss



@pytest.mark.parametrize("spatial_dims, shape", [(2, (32, 32)), (3, (16, 16, 16))])
def test_spikingjelly_fx_conversion(spatial_dims, shape):
    torch.manual_seed(0)
    net = ConvertibleUNet(spatial_dims, channels=(4, 8, 16))
    x = torch.rand(4, 1, *shape)
    ann = trained_like(net, x)
    with torch.no_grad():
        ann_out = ann(x)
    snn = FXConverter(RateCodingRecipe(dataloader=[x], mode="Max")).convert(ann)

    n_relu = sum(isinstance(m, nn.ReLU) for m in ann.modules())
    n_if = sum(isinstance(m, neuron.IFNode) for m in snn.modules())
    assert n_if == n_relu
    assert not any(isinstance(m, (nn.ReLU, nn.BatchNorm2d, nn.BatchNorm3d)) for m in snn.modules())

    functional.reset_net(snn)
    steps = 64
    with torch.no_grad():
        rate_out = sum(snn(x) for _ in range(steps)) / steps
    assert rate_out.shape == ann_out.shape
    corr = torch.corrcoef(torch.stack([rate_out.flatten(), ann_out.flatten()]))[0, 1]
    assert corr > 0.9, f"converted SNN output does not follow the ANN (correlation {corr:.3f})"
