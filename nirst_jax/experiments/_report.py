"""The reproduction report: every experiment's tables and figures in one markdown file."""

from __future__ import annotations

import os
import platform

import jax

from .._atomic import atomic_path
from .._version import __version__


def machine_description() -> str:
    """One line: CPU, core count, JAX backend and devices."""
    devices = jax.devices()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on "
            f"{jax.default_backend()} ({len(devices)} × {devices[0].device_kind})")


def write_report(study, sections, seconds: dict[str, float]) -> str:
    """Write `study.folder/report.md`; returns its text.

    Arguments:
        study: the `Study`.
        sections: the experiments' `Section`s, in report order.
        seconds: wall time of each stage, summed over the invocations that worked on it.
    """
    s = study.scale
    lines = [
        f"# nirst-jax reproduction of Feng et al., Optica 2022 (Z-Net) — scale `{s.name}`",
        f"nirst-jax {__version__}; {machine_description()}.",
        "Metrics inside the disk, in physical units (µM, %): MSE; PSNR = 10·log10(R²/MSE) with R the true "
        "image's maximum in the disk; SSIM as scikit-image's (7×7 window) averaged over the disk.",
        "| stage | wall time (s, summed over resumed runs) |\n|---|---|\n"
        + "\n".join(f"| {name} | {value:.0f} |" for name, value in seconds.items())
        + f"\n| total | {sum(seconds.values()):.0f} |",
        "Contents: " + ", ".join(f"[{x.title.split(' (')[0]}](#{x.key})" for x in sections) + ".",
    ]
    body = "\n\n".join(lines) + "\n\n" + "\n".join(f'<a id="{x.key}"></a>\n\n' + x.markdown() for x in sections)
    with atomic_path(study.folder / "report.md") as temporary:
        temporary.write_text(body)
    return body
