"""Figure of one simulated phantom: chromophore maps, optodes and the measurements."""

from __future__ import annotations

from matplotlib import colormaps
from matplotlib.figure import Figure
import numpy as np  # noqa: E402

from ..physics import CHROMOPHORE_UNITS, CHROMOPHORES  # noqa: E402
from ._extent import imshow_extent  # noqa: E402


def forward_figure(
    images: np.ndarray,
    extent: tuple[float, ...],
    mask: np.ndarray,
    fibres_xy: np.ndarray,
    wavelengths_nm,
    ln_amplitude: np.ndarray,
    ln_amplitude_background: np.ndarray,
    phase: np.ndarray | None = None,
    mri: np.ndarray | None = None,
    ln_amplitude_clean: np.ndarray | None = None,
):
    """Chromophore images with the fibres, ln A against source–detector separation, and the
    change ΔlnA caused by the phantom relative to its homogeneous background.

    Arguments:
        images: (3, n, n) HbO (µM), Hb (µM), water (%) on the pixel grid.
        extent: the grid's `PixelGrid.extent` (x0, x1, y0, y1), or (low, high) for [low, high]², mm.
        mask: (n, n) pixels inside the mesh.
        fibres_xy: (F, 2) fibre positions in mm.
        wavelengths_nm: (L,) wavelengths.
        ln_amplitude: (L, S, K) measurements.
        ln_amplitude_background: (L, S, K) measurements of the homogeneous background.
        phase: (L, S, K) phase in radians, or None.
        mri: (n, n) MRI image to show beside the chromophores, or None.
        ln_amplitude_clean: (L, S, K) noise-free measurements: adds a histogram of the noise.

    Returns:
        The matplotlib Figure.
    """
    n_fibres = len(fibres_xy)
    extra = mri is not None or ln_amplitude_clean is not None
    figure = Figure(figsize=(20 if extra else 15, 9.5))
    axes = figure.subplots(2, 4 if extra else 3)
    for ax, image, name, unit in zip(axes[0], images, CHROMOPHORES, CHROMOPHORE_UNITS):
        shown = np.ma.masked_where(~mask, image)
        handle = ax.imshow(shown, origin="lower", extent=imshow_extent(extent), cmap="viridis")
        ax.plot(fibres_xy[:, 0], fibres_xy[:, 1], "o", ms=5, mfc="white", mec="black")
        ax.text(*fibres_xy[0], " 0", fontsize=8)
        ax.set_title(f"{name} ({unit})")
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        figure.colorbar(handle, ax=ax, fraction=0.046, pad=0.04, label=unit)

    ring = ln_amplitude.shape[-1] == n_fibres - 1  # every fibre a source and a detector
    if ring:
        separation = (np.arange(1, n_fibres) * 360.0 / n_fibres + 180.0) % 360.0 - 180.0
    else:  # any other link pattern (a NIRFAST mesh's): by detector slot
        separation = np.arange(ln_amplitude.shape[-1], dtype=float)
    colours = colormaps["plasma"](np.linspace(0, 0.9, len(wavelengths_nm)))
    ax = axes[1, 0]
    for colour, wavelength, data in zip(colours, wavelengths_nm, ln_amplitude):
        order = np.argsort(separation)
        ax.plot(separation[order], data.mean(0)[order], "-o", ms=3, color=colour, label=f"{wavelength:g} nm")
    ax.set_xlabel("detector angle from source (°)" if ring else "detector slot")
    ax.set_ylabel("ln A (mean over sources)")
    ax.set_title("Boundary data")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[1, 1]
    shown_data = ln_amplitude if ln_amplitude_clean is None else ln_amplitude_clean
    change = (shown_data - ln_amplitude_background).reshape(len(wavelengths_nm), -1)
    bound = max(np.abs(change).max(), 1e-12)
    handle = ax.imshow(change, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
    ax.set_yticks(range(len(wavelengths_nm)), [f"{w:g}" for w in wavelengths_nm])
    ax.set_xlabel("measurement (source × detector slot)")
    ax.set_ylabel("wavelength (nm)")
    ax.set_title("ΔlnA: phantom − homogeneous background" + (" (noise-free)" if ln_amplitude_clean is not None else ""))
    figure.colorbar(handle, ax=ax, label="ΔlnA")

    ax = axes[1, 2]
    if phase is None:
        spectrum = ln_amplitude.mean(axis=(1, 2))
        ax.plot(wavelengths_nm, spectrum, "-o")
        ax.set_xlabel("wavelength (nm)")
        ax.set_ylabel("mean ln A")
        ax.set_title("Mean ln A by wavelength")
    else:
        for colour, wavelength, data in zip(colours, wavelengths_nm, phase):
            order = np.argsort(separation)
            ax.plot(separation[order], np.degrees(data.mean(0))[order], "-o", ms=3, color=colour)
        ax.set_xlabel("detector angle from source (°)")
        ax.set_ylabel("phase lag (°, mean over sources)")
        ax.set_title("Phase")
    if mri is not None:
        ax = axes[0, 3]
        handle = ax.imshow(np.ma.masked_where(~mask, mri), origin="lower", extent=imshow_extent(extent), cmap="gray")
        ax.set_title("MRI")
        ax.set_xlabel("x (mm)")
        figure.colorbar(handle, ax=ax, fraction=0.046, pad=0.04, label="grey level")
    elif extra:
        axes[0, 3].axis("off")
    if ln_amplitude_clean is not None:
        ax = axes[1, 3]
        noise = (ln_amplitude - ln_amplitude_clean).ravel()
        ax.hist(noise, bins=40, color="tab:gray")
        ax.set_xlabel("ln A − ln A (noise-free)")
        ax.set_title(f"Measurement noise: std {noise.std():.4f}")
    elif extra:
        axes[1, 3].axis("off")
    figure.tight_layout()
    return figure
