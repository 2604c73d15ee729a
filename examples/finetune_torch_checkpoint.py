"""Run and fine-tune a PyTorch ResNet-style CNN's checkpoint in ndconv, without torch.

The torch side (needs PyTorch) trains a small residual network with BatchNorm
on scikit-learn's bundled digits for one epoch and writes its state dict:

    python examples/finetune_torch_checkpoint.py --make digits_resnet.pth

The ndconv side (NumPy only: torch is never imported) reads the file with
``ndconv.io.load_torch``, loads it into the same network built from
``ndconv.nn`` (a ``Graph`` per residual block, torchvision's key names),
evaluates it, fine-tunes it a few epochs and writes a safetensors file:

    python examples/finetune_torch_checkpoint.py digits_resnet.pth [--epochs 3] [--out tuned.safetensors]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import ndconv
from ndconv import losses, nn, optim


def basic_block(c):
    """torchvision's ``BasicBlock(c, c)`` as a graph: the same ``state_dict`` keys."""
    g, relu = nn.Graph(), nn.ReLU()
    x = g.input()
    h = g.layer("conv1", nn.Conv2d(c, c, 3, padding=1, bias=False), x)
    h = g.layer("relu", relu, g.layer("bn1", nn.BatchNorm2d(c), h))
    h = g.layer("conv2", nn.Conv2d(c, c, 3, padding=1, bias=False), h)
    h = g.layer("bn2", nn.BatchNorm2d(c), h)
    return g.output(g.layer("relu", relu, g.add(h, x)))  # the skip connection


def ndconv_model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        basic_block(16), basic_block(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10))


def make_torch_checkpoint(path, seed=0):
    """The torch side: train one epoch on the digits, save the state dict.

    Returns the test accuracy and the test logits, for comparison.
    """
    import torch

    class BasicBlock(torch.nn.Module):  # torchvision.models.resnet.BasicBlock(c, c)
        def __init__(self, c):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(c)
            self.relu = torch.nn.ReLU()
            self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(c)

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + x)

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(), BasicBlock(16), BasicBlock(16), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(16, 10))
    split = ndconv.data.load_digits(seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    order = np.random.default_rng(seed).permutation(len(split.y_train))
    for i in range(0, len(order), 32):
        b = order[i:i + 32]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.tensor(split.x_train[b])),
                                          torch.tensor(split.y_train[b])).backward()
        opt.step()
    torch.save(model.state_dict(), path)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(split.x_test)).numpy()
    return float((logits.argmax(1) == split.y_test).mean()), logits


def finetune(path, epochs=3, seed=0, out=None):
    """The ndconv side; returns ``(accuracy before, accuracy after)`` on the test split."""
    split = ndconv.data.load_digits(seed=seed)
    model = ndconv_model()
    model.load_state_dict(ndconv.io.load_torch(path))
    before = ndconv.evaluate(model, split.x_test, split.y_test)["accuracy"]
    ndconv.fit(model, split.x_train, split.y_train, loss=losses.CrossEntropyLoss(),
               optimizer=optim.SGD(model.parameters(), lr=1e-2, momentum=0.9), epochs=epochs,
               batch_size=32, rng=seed, progress=False)
    after = ndconv.evaluate(model, split.x_test, split.y_test)["accuracy"]
    if out is not None:
        ndconv.io.save_safetensors(model.state_dict(), out)
    return before, after


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="the .pth file (read, or written with --make)")
    ap.add_argument("--make", action="store_true", help="write the checkpoint with torch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", help="write the fine-tuned weights as safetensors")
    args = ap.parse_args(argv)
    if args.make:
        acc, _ = make_torch_checkpoint(args.checkpoint)
        print(f"torch: test accuracy {acc:.3f}; state dict written to {args.checkpoint}")
        return
    before, after = finetune(args.checkpoint, args.epochs, out=args.out)
    print(f"ndconv: test accuracy {before:.3f} as loaded, {after:.3f} after {args.epochs} "
          f"epochs of fine-tuning; torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
