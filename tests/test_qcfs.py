"""QCFS activations (conversion-aware ANN): the function, the U-Net option, conversion, checkpoints."""

import pytest
import torch
from conftest import trained_like
from torch import nn

from bundle.errors import InputError
from bundle.networks import ConvertibleUNet
from bundle.networks.checkpoint import load_weights
from bundle.networks.precision import MixedPrecision
from bundle.networks.qcfs import QCFS, init_from_relu, percentile_thresholds, set_thresholds, thresholds
from bundle.spiking.checkpoint import load_snn, save_snn
from bundle.spiking.conversion import convert, one_at_a_time
from bundle.spiking.neurons import GuardedTernaryIFNode, IFNeuron
from bundle.spiking.segmenter import SpikingSegmenter

SHAPES = {2: (16, 16), 3: (8, 8, 8)}
CHANNELS = (4, 8)



def _qcfs_unet(spatial_dims: int, levels: int, seed: int = 0):
    torch.manual_seed(seed)
    x = torch.rand(2, 1, *SHAPES[spatial_dims])
    net = trained_like(ConvertibleUNet(spatial_dims, channels=CHANNELS, activation="qcfs", levels=levels), x)
    return set_thresholds(net, percentile_thresholds(net, one_at_a_time([x]), 99.0)), x


def test_qcfs_function_and_straight_through_gradient():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.0, 0.24, 0.26, 0.5, 1.0, 1.74, 1.76, 5.0], requires_grad=True)
    y = act(x)
    # lambda/L * clip(floor(x L / lambda + 1/2), 0, L) with lambda/L = 0.5
    assert y.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.5, 2.0, 2.0]
    y.sum().backward()
    # the floor passes its gradient through inside the range; the clip stops it outside
    assert x.grad[3:7].tolist() == [1, 1, 1, 1] and x.grad[0] == 0 and x.grad[-1] == 0
    assert act.threshold.grad is not None and act.threshold.grad != 0
    with pytest.raises(ValueError, match="levels"):
        QCFS(levels=0)


def test_qcfs_gradients_match_the_composed_straight_through_version():
    torch.manual_seed(0)
    act = QCFS(levels=4, threshold=1.3)
    x = (torch.randn(2, 3, 5, 5) * 1.5).requires_grad_()
    g = torch.randn(2, 3, 5, 5)
    (act(x) * g).sum().backward()
    x2, lam = x.detach().clone().requires_grad_(), torch.tensor(1.3, requires_grad=True)
    u = x2 * (4 / lam) + 0.5
    ref = (u + (torch.floor(u) - u).detach()).clamp(0, 4) * (lam / 4)
    (ref * g).sum().backward()
    assert torch.allclose(act(x), ref, atol=1e-6)
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)
    assert torch.allclose(act.threshold.grad, lam.grad, atol=1e-4)


def test_qcfs_under_bfloat16_autocast_keeps_its_levels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), QCFS(levels=4, threshold=1.0))
    out = MixedPrecision(net)(torch.rand(1, 1, 8, 8))
    assert out.dtype == torch.float32
    assert torch.allclose(out * 4, (out * 4).round(), atol=1e-6) and out.min() >= 0 and out.max() <= 1


def test_unet_activation_option():
    relu = ConvertibleUNet(3, channels=(4, 8, 16))
    qcfs = ConvertibleUNet(3, channels=(4, 8, 16), activation="qcfs", levels=8)
    n_relu = sum(isinstance(m, nn.ReLU) for m in relu.modules())
    layers = [m for m in qcfs.modules() if isinstance(m, QCFS)]
    assert len(layers) == n_relu and not any(isinstance(m, nn.ReLU) for m in qcfs.modules())
    assert all(m.levels == 8 for m in layers)
    # the same keys plus one threshold per activation: a ReLU checkpoint is the rest of a QCFS one
    extra = set(qcfs.state_dict()) - set(relu.state_dict())
    assert set(relu.state_dict()) <= set(qcfs.state_dict()) and len(extra) == n_relu
    assert all(k.endswith(".threshold") for k in extra)
    # relu stays the default and is unchanged
    assert relu.activation == "relu" and not any(isinstance(m, QCFS) for m in relu.modules())
    assert list(relu.state_dict()) == list(ConvertibleUNet(3, channels=(4, 8, 16), activation="relu").state_dict())
    with pytest.raises(ValueError, match="activation"):
        ConvertibleUNet(3, activation="gelu")
    with pytest.raises(ValueError, match="levels"):
        ConvertibleUNet(3, activation="qcfs", levels=0)


@pytest.mark.parametrize("neuron", ["binary", "ternary"])
@pytest.mark.parametrize("levels", [2, 4])
def test_one_layer_is_exact_at_t_equal_levels(neuron, levels):
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), QCFS(levels, threshold=0.7), nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        snn = convert(ann, [], neuron=neuron)
        out = SpikingSegmenter(snn, levels)(x)
        ann_out = ann(x)
    scalers = [m for m in snn.modules() if type(m).__name__ == "VoltageScaler"]
    assert [float(s.scale) for s in scalers] == pytest.approx([1 / 0.7, 0.7])
    assert torch.allclose(out, ann_out, atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("neuron", ["binary", "ternary"])
def test_converted_qcfs_unet_matches_its_ann_at_t_equal_levels(spatial_dims, neuron):
    levels = 4
    ann, x = _qcfs_unet(spatial_dims, levels)
    with torch.no_grad():
        ann_out = ann(x)
        snn = convert(ann, [], neuron=neuron)  # no calibration images needed
        kinds = {IFNeuron: "binary", GuardedTernaryIFNode: "ternary"}
        assert [kinds[type(m)] for m in snn.modules() if type(m) in kinds] == [neuron] * len(thresholds(ann))
        assert not any(isinstance(m, (QCFS, nn.ReLU)) for m in snn.modules())
        out = SpikingSegmenter(snn, levels)(x)  # the same (constant) image at every step
    error = float((out - ann_out).abs().max() / ann_out.abs().max())
    corr = float(torch.corrcoef(torch.stack([out.flatten(), ann_out.flatten()]))[0, 1])
    assert error < 0.1 and corr > 0.999, (error, corr)
    # the thresholds are the trained lambdas, whatever the calibration images say
    scales = sorted(float(m.scale) for n, m in snn.named_modules() if n.endswith("scaler1"))
    assert scales == pytest.approx(sorted(thresholds(ann).values()))


def test_relu_networks_still_calibrate():
    torch.manual_seed(0)
    x = torch.rand(1, 1, *SHAPES[2])
    ann = trained_like(ConvertibleUNet(2, channels=CHANNELS), torch.rand(2, 1, *SHAPES[2]))
    maxima = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: maxima.append(float(o.max())))
        for m in ann.modules()
        if isinstance(m, nn.ReLU)
    ]
    with torch.no_grad():
        ann(x)
    for h in hooks:
        h.remove()
    snn = convert(ann, [x], mode="max")
    # one image: each ReLU's threshold is its maximum on that image (calibrated, as before QCFS existed)
    scales = [float(m.scale) for n, m in snn.named_modules() if n.endswith("scaler1")]
    assert sorted(scales) == pytest.approx(sorted(maxima), rel=1e-4)
    with pytest.raises(ValueError, match="channel_wise"):
        convert(_qcfs_unet(2, 4)[0], [], channel_wise=True)


def test_qcfs_checkpoints_round_trip(tmp_path):
    ann, x = _qcfs_unet(3, 4)
    path = tmp_path / "model_qcfs.pt"
    torch.save(ann.state_dict(), path)
    fresh = load_weights(ConvertibleUNet(3, channels=CHANNELS, activation="qcfs", levels=4), path, "train_ann")
    assert thresholds(fresh) == thresholds(ann)
    with torch.no_grad():
        assert torch.equal(fresh(x), ann(x))
    # a QCFS checkpoint does not pass for a ReLU network, nor a ReLU one for a QCFS network
    with pytest.raises(InputError, match="does not fit"):
        load_weights(ConvertibleUNet(3, channels=CHANNELS), path, "train_ann")
    relu_path = tmp_path / "model_relu.pt"
    torch.save(ConvertibleUNet(3, channels=CHANNELS).state_dict(), relu_path)
    with pytest.raises(InputError, match="does not fit"):
        load_weights(ConvertibleUNet(3, channels=CHANNELS, activation="qcfs"), relu_path, "train_ann")
    # the converted SNN round-trips through save_snn / load_snn on a QCFS template
    snn = convert(ann, [], neuron="ternary")
    settings = {"mode": "99.9%", "channel_wise": False, "neuron": "ternary", "v_init": 0.5, "timesteps": 4}
    rebuilt, _ = load_snn(
        ConvertibleUNet(3, channels=CHANNELS, activation="qcfs", levels=4), save_snn(snn, tmp_path / "snn.pt", settings)
    )
    # an SNN checkpoint does not depend on the activation the ANN had: a ReLU template rebuilds it too
    relu_rebuilt, _ = load_snn(ConvertibleUNet(3, channels=CHANNELS), tmp_path / "snn.pt")
    with torch.no_grad():
        out = SpikingSegmenter(snn, 4)(x)
        assert torch.equal(out, SpikingSegmenter(rebuilt, 4)(x))
        assert torch.equal(out, SpikingSegmenter(relu_rebuilt, 4)(x))


def test_init_from_relu(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(2, 1, *SHAPES[3])
    relu = trained_like(ConvertibleUNet(3, channels=CHANNELS), x)
    path = tmp_path / "model_ann.pt"
    torch.save({"model": relu.state_dict()}, path)
    qcfs = init_from_relu(ConvertibleUNet(3, channels=CHANNELS, activation="qcfs", levels=8), path, [x[:1]], q=100.0)
    maxima = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: maxima.__setitem__(n, float(o.max())))
        for n, m in relu.named_modules()
        if isinstance(m, nn.ReLU)
    ]
    with torch.no_grad():
        relu(x[:1])
    for h in hooks:
        h.remove()
    assert thresholds(qcfs) == pytest.approx(maxima)  # q=100: each ReLU's maximum
    assert all(torch.equal(v, relu.state_dict()[k]) for k, v in qcfs.state_dict().items() if k in relu.state_dict())
    with torch.no_grad():  # 8 levels up to the max: close to the ReLU network
        a, b = relu(x), qcfs(x)
    assert float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) > 0.95
    with pytest.raises(InputError, match="does not fit"):
        init_from_relu(ConvertibleUNet(3, channels=(4, 16), activation="qcfs"), path, [x[:1]])


def test_train_config_starts_a_qcfs_ann_from_a_relu_checkpoint_with_its_own_threshold_rate(decathlon, tmp_path):
    """``qcfs_init_ckpt``: the ANN stage's network is the ReLU ANN's weights with percentile thresholds;
    ``qcfs_threshold_learning_rate``: the thresholds get their own optimizer group."""
    from conftest import REPO
    from monai.bundle import ConfigParser

    relu = ConvertibleUNet(3, 1, 3, (4, 8, 16))
    ckpt = tmp_path / "relu.pt"
    torch.save({"model": relu.state_dict()}, ckpt)
    parser = ConfigParser()
    parser.read_config(str(REPO / "configs" / "train.json"))
    parser.update({"dataset_dir": str(decathlon), "output_dir": str(tmp_path / "out"), "channels": [4, 8, 16],
                   "activation": "qcfs", "levels": 4, "qcfs_init_ckpt": str(ckpt), "calibration_cases": 2,
                   "num_workers": 0, "qcfs_threshold_learning_rate": 0.01, "device": "cpu"})  # fmt: skip
    stage = parser.get_parsed_content("ann")
    network = stage.network
    started = {k: v for k, v in network.state_dict().items() if not k.endswith(".threshold")}
    assert all(torch.equal(v, relu.state_dict()[k]) for k, v in started.items())
    lambdas = thresholds(network)
    assert len(lambdas) == sum(isinstance(m, nn.ReLU) for m in relu.modules())
    assert all(v != pytest.approx(8.0) and v > 0 for v in lambdas.values())  # percentiles, not the default
    groups = stage.optimizer.param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(3e-3), pytest.approx(0.01)]
    assert len(groups[1]["params"]) == len(lambdas)

    parser.update({"activation": "relu"})
    parser.parse(True)
    with pytest.raises(SystemExit, match="^error: qcfs_init_ckpt .*relu.pt: starts a QCFS network; set activation qcfs"):
        parser.get_parsed_content("ann").network
