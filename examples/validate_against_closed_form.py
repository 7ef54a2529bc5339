"""Validate the FEM forward model against the closed-form solution for a homogeneous disk.

Homogeneous 82 mm disk (µa 0.01/mm, µs' 1/mm, n 1.33), one source one transport length
inside the rim, 64 boundary detectors; CW ln A and 100 MHz phase from `nirst_jax.point_fluence`
on two meshes, against the Bessel-series solution `disk_boundary_fluence`. Prints the largest
errors and writes a figure.

Run: `python examples/validate_against_closed_form.py [--spacings 1.0,0.5] [--out docs/figures/validation.png]`
(`--spacings 2.0,1.0` takes a few seconds; the default takes about a minute on two cores).
"""

from __future__ import annotations

import argparse

import nirst_jax as nj
import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nirst_jax._atomic import save_figure  # noqa: E402
from nirst_jax.physics import disk_boundary_fluence  # noqa: E402

RADIUS, MUA, MUSP, FREQUENCY = 41.0, 0.01, 1.0, 100e6


def errors_on(spacing: float, angles: np.ndarray):
    """FEM and exact boundary fluence (CW and 100 MHz) for one mesh spacing."""
    mesh = nj.disk_mesh(RADIUS, spacing)
    rim = RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    source = [[RADIUS - 1 / MUSP, 0.0]]
    out = {}
    for frequency in (0.0, FREQUENCY):
        fem = np.asarray(
            nj.point_fluence(
                mesh, np.full(mesh.n_nodes, MUA), np.full(mesh.n_nodes, MUSP), source, rim, frequency_hz=frequency
            )
        )[0]
        exact = disk_boundary_fluence(RADIUS, MUA, MUSP, RADIUS - 1 / MUSP, angles, frequency_hz=frequency)
        out[frequency] = (fem, exact)
    return mesh.n_nodes, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacings", default="1.0,0.5", help="mesh spacings in mm")
    parser.add_argument("--out", default="docs/figures/validation.png")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    angles = np.radians(np.arange(1, 64) * 360 / 64)  # every detector except on the source's angle
    degrees = np.degrees(angles)
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for spacing in (float(s) for s in args.spacings.split(",")):
        n_nodes, results = errors_on(spacing, angles)
        fem, exact = results[0.0]
        fem_fd, exact_fd = results[FREQUENCY]
        ln_error = np.log(np.abs(fem)) - np.log(np.abs(exact))
        phase_error = np.degrees(np.angle(fem_fd / exact_fd))
        label = f"{spacing:g} mm mesh ({n_nodes} nodes)"
        print(f"{label}: max |Δ ln A| = {np.abs(ln_error).max():.4f}, max |Δ phase| at 100 MHz = {np.abs(phase_error).max():.3f}°")
        if spacing == float(args.spacings.split(",")[0]):
            axes[0].plot(degrees, np.log(np.abs(exact)), "k-", lw=2, label="closed form")
        axes[0].plot(degrees, np.log(np.abs(fem)), "o", ms=3, label=f"FEM, {label}")
        axes[1].plot(degrees, ln_error, "-o", ms=3, label=label)
        axes[2].plot(degrees, phase_error, "-o", ms=3, label=label)
    axes[0].set(xlabel="detector angle from source (°)", ylabel="ln Φ (CW)", title="Boundary fluence")
    axes[1].set(xlabel="detector angle from source (°)", ylabel="ln A error", title="CW: FEM − closed form")
    axes[1].axhspan(-0.005, 0.005, color="0.9", zorder=0, label="±0.005")
    axes[2].set(xlabel="detector angle from source (°)", ylabel="phase error (°)", title="100 MHz: FEM − closed form")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    figure.suptitle("Homogeneous 82 mm disk, µa 0.01 /mm, µs' 1 /mm, n 1.33, source 1 mm inside the rim")
    figure.tight_layout()
    save_figure(figure, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
