"""From a fully connected layer to a convolution, step by step (ndconv.derive).

Each step of the lecture's derivation runs and is checked:

1. a fully connected layer h[i,j] = sum_{k,l} w[i,j,k,l] x[k,l] (a dense weight);
2. re-indexing by offset: v[i,j,a,b] = w[i,j,i+a,j+b];
3. translation invariance: v[i,j,a,b] = v[a,b]  -> a cross-correlation;
4. locality: v[a,b] = 0 for |a|, |b| > Delta     -> a (2 Delta + 1)^2 kernel;

then the way back (kernel -> dense weight), what each principle's violation
looks like, the parameter bill of the lecture's photo, and the two properties
measured on layers.

    python examples/derivation.py
"""

import numpy as np

import ndconv
from ndconv import derive, nn, plan, properties


def main():
    rng = np.random.default_rng(0)
    H, W, delta = 6, 7, 1
    x = rng.standard_normal((H, W))

    # A dense weight that happens to be tied and local: built from a 3x3 kernel.
    kernel = rng.standard_normal((3, 3))
    w = derive.conv_to_dense(kernel[None, None], (1, H, W), padding=delta)[0, :, :, 0]
    print(f"1. fully connected weight w: shape {w.shape} ({w.size:,} numbers)")
    h = np.tensordot(w, x, axes=2)

    v = derive.reindex(w)
    print(f"2. reindexed v[i, j, a, b] = w[i, j, i+a, j+b]: shape {v.shape} "
          f"(offsets -{H - 1}..{H - 1}, -{W - 1}..{W - 1})")

    tied = derive.tie(v)
    print(f"3. translation invariance holds: v[i, j, a, b] = v[a, b], shape {tied.shape}")

    k = derive.localize(tied, delta)
    print(f"4. locality holds for Delta = {delta}: the kernel is {k.shape}, "
          f"equal to the one we started from: {np.array_equal(k, kernel)}")
    same = np.allclose(ndconv.correlate(x, k, mode="same"), h)
    print(f"   the dense layer's output equals correlate(x, kernel, mode='same'): {same}")

    # What a violation looks like.
    w_bad = w.copy()
    w_bad[2, 3, 3, 3] += 1.0  # output (2, 3) weighs input (3, 3) differently
    try:
        derive.tie(derive.reindex(w_bad))
    except derive.PrincipleError as e:
        print(f"\n   an untied weight: {e}")
    try:
        derive.localize(tied, 0)
    except derive.PrincipleError as e:
        print(f"   Delta = 0 for a 3x3 kernel: {e}")

    # Channels, stride, padding, dilation: the doubly block Toeplitz matrix.
    weight = rng.standard_normal((4, 3, 3, 3))
    xc = rng.standard_normal((3, 9, 8))
    Wd = derive.conv_to_dense(weight, xc.shape, stride=2, padding=1, dilation=1)
    ok = np.allclose(np.tensordot(Wd, xc, axes=3), ndconv.conv(xc, weight, stride=2, padding=1))
    print(f"\n5. conv_to_dense: W of shape {Wd.shape}; tensordot(W, x) == conv(x): {ok}")
    back = derive.dense_to_conv(Wd, 3, stride=2, padding=1)
    print(f"   dense_to_conv recovers the kernel: {np.array_equal(back, weight)}")

    print("\n6. the lecture's photo (3 x 3000 x 4000), one layer, 100 hidden units / channels:")
    print(plan.format_table(plan.lecture_table()))
    with plan.memory_limit("4GB"):
        try:
            nn.FullyConnected((3, 3000, 4000), 100)
        except MemoryError as e:
            print(f"   building it: {type(e).__name__}: {e}")

    print("\n7. the principles as properties of layers (float64, 12x12 input, shift (1, 2)):")
    xb = rng.standard_normal((1, 2, 12, 12))
    layers = {
        "FullyConnected": (nn.FullyConnected((2, 12, 12), (3, 12, 12), dtype=np.float64, rng=0),
                           "circular"),
        "LocallyConnected2d": (nn.LocallyConnected2d(2, 3, 3, (12, 12), padding=1,
                                                     dtype=np.float64, rng=0), "zeros"),
        "Conv2d": (nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0), "zeros"),
        "Conv2d circular": (nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular",
                                      dtype=np.float64, rng=0), "circular"),
    }
    window = (np.arange(5, 8), np.arange(5, 8))  # the 3x3 window around output (6, 6)
    for name, (layer, boundary) in layers.items():
        eq = properties.translation_equivariance(layer, xb, (1, 2), boundary=boundary)
        loc = properties.locality(layer, xb, (6, 6), region=window)
        eq_text = f"equivariance ({boundary}): {'yes' if eq else 'no'}"
        print(f"   {name:<20} {layer.num_parameters():>7,} params  {eq_text:<30}"
              f"local (3x3): {'yes' if loc else 'no'}")


if __name__ == "__main__":
    main()
