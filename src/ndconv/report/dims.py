"""8. 1-D and 3-D: the same layer on an ECG (PyWavelets) and an MRI volume (nibabel)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ._figures import colorbar, gaussian_1d, pyplot
from ._page import Skip, esc

if TYPE_CHECKING:
    from ._page import Section


TITLE = "1-D and 3-D: an ECG and an MRI volume"


def steps(quick: bool) -> int:
    return 4


def run(s: Section) -> None:
    s.p("Nothing in the derivation is specific to two dimensions: the sums run over one "
        "index for a signal, three for a volume. ndconv has one N-d implementation, "
        "called here as <code>conv1d</code> and <code>conv3d</code>.")
    _ecg(s)
    _mri(s)


def _ecg(s: Section) -> None:
    import pywt.data

    from .. import conv1d

    s.h3("1-D: an electrocardiogram")
    ecg = np.asarray(pywt.data.ecg(), dtype=np.float64)
    g = gaussian_1d(4.0)
    smooth = conv1d(ecg[None], g[None, None], padding="same", padding_mode="replicate")[0]
    d = conv1d(smooth[None], np.array([[[-0.5, 0.0, 0.5]]]), padding="same",
               padding_mode="replicate")[0]
    ref = np.correlate(np.pad(ecg, len(g) // 2, mode="edge"), g, mode="valid")
    s.step("ECG filtered")
    s.p(f"PyWavelets' bundled ECG: {ecg.size} samples, stored as integers (PyWavelets "
        "documents neither the sampling rate nor the unit, so the axes say "
        "<em>samples</em> and <em>recorded units</em>). Smoothed with a Gaussian "
        f"(&sigma; = 4 samples, {g.size} taps, replicate border), then differentiated "
        "with the central difference [&minus;&frac12;, 0, &frac12;], both with "
        f"<code>ndconv.conv1d</code>. Against <code>numpy.correlate</code>: max |difference| "
        f"= {np.abs(smooth - ref).max():.2g}. The smoothing removes noise of standard "
        f"deviation {np.std(ecg - smooth):.2f} units; the steepest slope, on the R waves, "
        f"is {np.abs(d).max():.1f} units per sample.")
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(8.8, 3.6), sharex=True,
                             gridspec_kw={"height_ratios": [1.4, 1]})
    t = np.arange(ecg.size)
    axes[0].plot(t, ecg, lw=0.7, color="0.55", label="recorded")
    axes[0].plot(t, smooth, lw=1.1, color="tab:blue", label="smoothed (Gaussian, σ = 4)")
    axes[0].set_ylabel("recorded units")
    axes[0].legend(fontsize=8, loc="upper right", ncol=2)
    axes[1].plot(t, d, lw=0.9, color="tab:red")
    axes[1].axhline(0, color="k", lw=0.4)
    axes[1].set_ylabel("units / sample")
    axes[1].set_title("derivative of the smoothed signal: kernel [−½, 0, ½]", fontsize=9)
    axes[1].set_xlabel("sample")
    axes[1].set_xlim(0, ecg.size - 1)
    for ax in axes:
        ax.grid(alpha=0.25)
    fig.tight_layout()
    s.figure(fig, "ecg",
             f"Top: the ECG over {ecg.size} samples in grey with the smoothed signal in "
             "blue on top; about four heartbeats with tall R peaks. Bottom: its derivative "
             "in red, with sharp positive and negative spikes at each R wave.",
             "A 1-D convolution: smoothing, then a derivative kernel.")
    s.step("ECG figure")


def _mri(s: Section) -> None:
    import nibabel

    from .. import conv3d

    s.h3("3-D: an MRI volume")
    path = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "anatomical.nii")
    if not os.path.exists(path):
        raise Skip(f"nibabel's bundled anatomical.nii is missing ({path})")
    img: Any = nibabel.load(path)  # a Nifti1Image (nibabel types load() as its base class)
    vol = np.asarray(img.get_fdata(), dtype=np.float64)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    unit = img.header.get_xyzt_units()[0] or "voxel"
    g = gaussian_1d(1.0)
    blur_k = g[:, None, None] * g[None, :, None] * g[None, None, :]
    lap = np.zeros((3, 3, 3))
    lap[1, 1, :] = lap[1, :, 1] = lap[:, 1, 1] = 1
    lap[1, 1, 1] = -6
    blur = conv3d(vol[None], blur_k[None, None], padding="same", padding_mode="replicate")[0]
    edges = conv3d(blur[None], lap[None, None], padding="same", padding_mode="replicate")[0]
    s.step("MRI filtered")
    check = ""
    try:
        from scipy import ndimage

        check = (" Against <code>scipy.ndimage.correlate</code>: max |difference| = "
                 f"{np.abs(ndimage.correlate(vol, blur_k, mode='nearest') - blur).max():.2g}.")
    except ImportError:
        check = " (SciPy is not installed: the check against scipy.ndimage is skipped.)"
    s.p(f"nibabel's bundled MRI volume <code>anatomical.nii</code>: {esc(vol.shape[0])}"
        f"&times;{esc(vol.shape[1])}&times;{esc(vol.shape[2])} voxels of "
        f"{zooms[0]:g}&times;{zooms[1]:g}&times;{zooms[2]:g} {esc(unit)}, blurred with a 3-D "
        f"Gaussian ({blur_k.shape[0]}&times;{blur_k.shape[1]}&times;{blur_k.shape[2]}, "
        "&sigma; = 1 voxel) and then filtered with the 3-D Laplacian (the 7-point stencil: "
        "&minus;6 in the middle, 1 at the six neighbours), with <code>ndconv.conv3d</code>."
        f"{check} The volume and its blur share one colour scale, so the blur's lower "
        "contrast is real; the Laplacian has its own, symmetric about zero.")
    plt = pyplot()
    fig, axes = plt.subplots(3, 3, figsize=(8.8, 7.4))
    mid = [n // 2 for n in vol.shape]
    names = ["sagittal", "coronal", "axial"]
    lo, hi = np.percentile(vol, [0.5, 99.5])
    llim = np.percentile(np.abs(edges), 99.5)
    for r, (name, v, kw) in enumerate([
            ("volume", vol, dict(cmap="gray", vmin=lo, vmax=hi)),
            ("3-D Gaussian blur", blur, dict(cmap="gray", vmin=lo, vmax=hi)),
            ("3-D Laplacian of the blur", edges, dict(cmap="RdBu_r", vmin=-llim, vmax=llim))]):
        for c in range(3):
            sl = np.take(v, mid[c], axis=c)
            keep = [z for i, z in enumerate(zooms) if i != c]
            ext = [0, sl.shape[0] * keep[0], 0, sl.shape[1] * keep[1]]
            im = axes[r, c].imshow(np.rot90(sl), extent=ext, **kw)
            axes[r, c].set_title(f"{name}: {names[c]}, slice {mid[c]}", fontsize=8)
            axes[r, c].tick_params(labelsize=7)
            if r == 2:
                axes[r, c].set_xlabel(unit, fontsize=8)
            if c == 0:
                axes[r, c].set_ylabel(unit, fontsize=8)
        colorbar(fig, im, axes[r, 2], "signal (scanner units)" if r < 2 else "Laplacian")
    fig.tight_layout()
    s.figure(fig, "mri",
             "A 3 by 3 grid of MRI slices through the middle of the volume in three "
             "orientations: the original in grey, the blurred volume in grey on the same "
             "scale, and the Laplacian in red and blue, bright at tissue boundaries.",
             f"Middle slices (axes in {esc(unit)}); rows 1 and 2 share a colour scale "
             "(0.5 to 99.5 percentile of the volume).")
    s.step("MRI figure")
