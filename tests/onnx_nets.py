"""Small torch networks with random weights, the shapes real CNNs have: a
ResNet-style net (BatchNorm, residual adds), a MobileNet-style net (depthwise
convs, Hardswish, squeeze-excite) and a U-Net-style net (ConvTranspose,
Concat). Shared by the ONNX tests and benchmarks/onnx_inference.py."""

from __future__ import annotations

import torch
import torch.nn as tnn


def _randomize_bn(model, seed=0):
    """Running statistics and affine parameters far from the defaults, so a BN bug shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (tnn.BatchNorm1d, tnn.BatchNorm2d, tnn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


class BasicBlock(tnn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(c_out)
        self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = tnn.Sequential(tnn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                       tnn.BatchNorm2d(c_out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNetish(tnn.Module):
    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, width, 3, 1, 1, bias=False),
                                   tnn.BatchNorm2d(width), tnn.ReLU(), tnn.MaxPool2d(3, 2, 1))
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.pool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(4 * width, classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(tnn.Module):
    def __init__(self, c, expand, stride):
        super().__init__()
        h = c * expand
        self.expand = tnn.Sequential(tnn.Conv2d(c, h, 1, bias=False), tnn.BatchNorm2d(h), tnn.Hardswish())
        self.dw = tnn.Sequential(tnn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False),
                                 tnn.BatchNorm2d(h), tnn.Hardswish())
        self.se_reduce = tnn.Conv2d(h, max(1, h // 4), 1)
        self.se_expand = tnn.Conv2d(max(1, h // 4), h, 1)
        self.project = tnn.Sequential(tnn.Conv2d(h, c, 1, bias=False), tnn.BatchNorm2d(c))
        self.residual = stride == 1

    def forward(self, x):
        y = self.dw(self.expand(x))
        s = torch.nn.functional.adaptive_avg_pool2d(y, 1)
        s = torch.nn.functional.hardsigmoid(self.se_expand(torch.relu(self.se_reduce(s))))
        y = self.project(y * s)
        return x + y if self.residual else y


class MobileNetish(tnn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, 8, 3, 2, 1, bias=False), tnn.BatchNorm2d(8),
                                   tnn.Hardswish())
        self.blocks = tnn.Sequential(InvertedResidual(8, 3, 1), InvertedResidual(8, 4, 2))
        self.head = tnn.Sequential(tnn.Flatten(), tnn.Dropout(0.2), tnn.Linear(8, classes))

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(torch.nn.functional.adaptive_avg_pool2d(x, 1))


class UNetish(tnn.Module):
    def __init__(self, c=4):
        super().__init__()

        def double(i, o):
            return tnn.Sequential(tnn.Conv2d(i, o, 3, padding=1), tnn.BatchNorm2d(o), tnn.ReLU(),
                                  tnn.Conv2d(o, o, 3, padding=1), tnn.LeakyReLU(0.1))

        self.enc1 = double(1, c)
        self.enc2 = double(c, 2 * c)
        self.pool = tnn.MaxPool2d(2)
        self.bottom = double(2 * c, 4 * c)
        self.up2 = tnn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.dec2 = double(4 * c, 2 * c)
        self.up1 = tnn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1)
        self.resize = tnn.Upsample(scale_factor=2, mode="bilinear")  # a Resize node
        self.dec1 = double(4 * c, c)
        self.out = tnn.Conv2d(c, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottom(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1, self.resize(d2)], dim=1))
        return torch.sigmoid(self.out(d1))


NETS = {
    "resnet": (ResNetish, (3, 32, 32)),
    "mobilenet": (MobileNetish, (3, 32, 32)),
    "unet": (UNetish, (1, 16, 16)),
}


def build(name, seed=0):
    """``(torch model in eval mode, input shape without batch)`` with seeded random weights."""
    cls, shape = NETS[name]
    torch.manual_seed(seed)
    return _randomize_bn(cls()).eval(), shape


def export(model, shape, path, *, batch=2, fold=False, opset=17):
    """``torch.onnx.export(..., dynamo=False)`` with a dynamic batch.

    ``fold=False`` keeps BatchNormalization nodes and the state_dict names of
    every weight (constant folding fuses BN into the convolutions).
    """
    import warnings

    x = torch.zeros(batch, *shape)
    with warnings.catch_warnings():  # torch's exporter deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, do_constant_folding=fold,
                          input_names=["x"], output_names=["y"], opset_version=opset,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path
