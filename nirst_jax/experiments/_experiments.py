"""The study's experiments, each a function of a `Study` returning a report `Section`.

- `test_split`: DRI, Z-Net, Y-Net, hybrid Z-Net, Z-Net without MRI (the study's Fig. 2 and
  Fig. S2) and the learned Gauss-Newton network (LGN) on the test split.
- `three_inclusions`: the three-inclusion phantom, recovered vs true per region (Fig. S3,
  Table S2).
- `eight_fibres`: test data from 8 of the 16 fibres (Fig. S4).
- `no_mri`: Z-Net with and without the MRI input (Fig. S5).
- `lesion_contrast`: HbT lesion/background contrast of malignant- and benign-like lesions
  (the study's patients: 1.47 and 1.05).
- `shape_mismatch`: MRI shapes off the optical truth by up to 2 mm.
- `fine_mesh`: data simulated on a finer mesh than the training and DRI mesh (no inverse crime),
  with DRI also on a finer reconstruction mesh (DRI at its best).
- `shapes`: lesion shapes no network saw (ellipses, irregular lesions, three inclusions).
- `refinement`: every network followed by DRI Gauss-Newton steps centred on its output.
- `realistic`: Z-Net trained on the `realistic` distribution (MRI and optics decoupled).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jax
import numpy as np

from .._atomic import save_figure
from ..evaluation import CHROMOPHORE_LABELS, Scores, derived_maps, hbt_contrast, region_masks, region_means, region_table
from ..figures import comparison_figure
from ..models import parameter_count
from ..training import TrainedNetwork
from ._scored import mean_row, psnr_change_table, psnr_comparison, relative, score_methods
from ._section import Section
from ..phantoms import SHAPE_FAMILIES
from ._study import FINE_DRI, METHODS, NETWORKS, REFINED, SHAPES, SYMMETRISED, Study, TestSet

STUDY_WATER = {"DRI": (3.6, 22.1, 0.49), "Y-Net": (0.19, 37.4, 0.78), "Z-Net": (0.05, 43.3, 0.99)}
"""The study's water MSE, PSNR (dB) and SSIM (Feng et al. 2022, Fig. 2 and text)."""
STUDY_CONTRAST = {"malignant": 1.47, "benign": 1.05}
"""HbT lesion/background contrast the study measured with Z-Net on its two patients."""
def _scale_note(study: Study) -> str:
    s, d = study.scale, study.dataset
    return (f"Scale `{s.name}`: {s.count} phantoms ({len(d.indices('train'))} for training), "
            f"{s.image_size}×{s.image_size} images, {d.mesh.n_nodes}-node mesh, networks at width {s.width:g} "
            f"trained {s.epochs} epochs (batch {s.batch_size}, Adam lr {s.learning_rate:g}, {s.schedule} schedule). "
            f"The study: 20 000 phantoms (14 000 for training), 100×100 images, full-width networks, 200 epochs. "
            f"LGN is the learned Gauss-Newton network (docs/learned.md): {s.lgn_iterations} unrolled iterations on "
            f"the training mesh, a {s.lgn_basis_size}×{s.lgn_basis_size} pixel basis, update CNNs at width "
            f"{s.lgn_network_width:g}, trained {s.lgn_epochs} epochs "
            f"(Adam lr {s.lgn_learning_rate:g}, cosine); \"LGN symmetrised\" is its images averaged over the "
            f"rotations and reflections that map the disk and its fibres onto themselves (8; `--symmetry-average`). "
            f"DRI + U-Net is the study's DRI followed by a U-Net that also "
            f"sees the MRI, trained on the DRI images of {s.dri_unet_phantoms} training phantoms (docs/learned.md)."
            + (f" Both learned methods train on the same phantoms simulated on a finer, {s.learned_data_mesh_spacing_mm:g} mm "
               f"mesh ({study.learned_dataset.mesh.n_nodes} nodes) and reconstruct on the training mesh, so training shows "
               "them that mesh's modelling error." if s.learned_data_mesh_spacing_mm is not None else "")
            + f" Their supervised loss is `{s.learned_loss}` (docs/training.md).")


def test_split(study: Study) -> Section:
    section = Section("test-split", "Test split: DRI, Z-Net, Y-Net, hybrid Z-Net, Z-Net without MRI (Fig. 2, Fig. S2)")
    test = study.test_set("test")
    scores = score_methods(study, test, METHODS, section, "test-split phantoms")
    wins, losses = psnr_comparison(scores, "Z-Net", ("DRI", "Y-Net"))
    section.text.append(_scale_note(study))
    verdict = (f"Z-Net has the best mean PSNR of Z-Net, DRI and Y-Net for {', '.join(wins) or 'no chromophore'}."
               if wins else "Z-Net does not have the best mean PSNR of Z-Net, DRI and Y-Net for any chromophore.")
    if losses:
        verdict += (" It does not for " + "; ".join(losses) + ". Why: at this scale the networks see "
                    f"{len(study.dataset.indices('train'))} training phantoms at width {study.scale.width:g} for "
                    f"{study.scale.epochs} epochs, far from the study's 14 000 phantoms and full networks; and DRI "
                    "here reconstructs on the very mesh that simulated the data, from an MRI whose regions match the "
                    "optical truth exactly (an inverse crime that favours it; the shape-mismatch and finer-mesh sections "
                    "measure how much of its lead that accounts for).")
    section.text.append(verdict)
    section.numbers["znet_best_psnr"] = wins
    s = study.scale
    section.text.append(f"The physics-consistency loss in the last {s.physics_epochs} of the Z-Net's {s.epochs} epochs "
                        f"(hybrid Z-Net, weight {s.physics_weight:g}; the same run before them) changes its mean PSNR by "
                        f"{_hybrid_gain(*scores.difference('Z-Net hybrid', 'Z-Net'))} (HbO / Hb / water; ± the paired standard "
                        "error over the phantoms).")
    rows = ["| method | water MSE | water PSNR (dB) | water SSIM |", "|---|---|---|---|"]
    for method in ("DRI", "Y-Net", "Z-Net"):
        ours = [scores.mean(method, m)[2] for m in ("mse", "psnr", "ssim")]
        paper = STUDY_WATER[method]
        rows.append(f"| {method} | {ours[0]:.3f} (study {paper[0]}) | {ours[1]:.1f} (study {paper[1]}) | "
                    f"{ours[2]:.3f} (study {paper[2]}) |")
    section.tables.append(("Water, here vs the study (the study's PSNR/SSIM data-range conventions and value "
                           "ranges are not published; compare trends, not digits)", "\n".join(rows)))
    rows = ["| network | parameters | training time (s; the hybrid's: its whole run, whose epochs before the physics "
            "are Z-Net's (copied from Z-Net's run when it trains first); DRI + U-Net's: with the DRI of its "
            "training phantoms) |", "|---|---|---|"]
    for network in NETWORKS:
        model = TrainedNetwork(study.trained(network)).model
        rows.append(f"| {network} | {parameter_count(model):,} | {study.training_seconds(network):.0f} |")
    section.tables.append(("Network size and training wall time on this machine", "\n".join(rows)))
    return section


def three_inclusions(study: Study) -> Section:
    section = Section("three-inclusions", "Three-inclusion phantom: recovered vs true values (Fig. S3, Table S2)")
    fixed, phantoms = study.fixed
    one = TestSet("three-inclusions", fixed.ids[:1], fixed.ln_amplitude[:1], fixed.mri[:1], fixed.truth[:1], fixed.mask)
    images = {name: study.reconstruct(fixed, name)[0] for name in METHODS}
    grid = study.dataset.config.grid()
    masks = region_masks(phantoms[0], grid, fixed.mask)
    section.tables.append(("Mean per region (pixels wholly inside it); relative error in brackets",
                           region_table(one.truth[0], images, masks)))
    scores = Scores.compute({k: v[None] for k, v in images.items()}, one.truth, one.mask)
    rows = ["| method | " + " | ".join(f"MSE {c}" for c in CHROMOPHORE_LABELS) + " |", "|---|---|---|---|"]
    rows += [f"| {m} | " + " | ".join(f"{v:.3f}" for v in scores.mean(m, "mse")) + " |" for m in METHODS]
    section.tables.append(("Whole-image MSE of the three-inclusion phantom", "\n".join(rows)))
    figure = comparison_figure(one.truth, {k: v[None] for k, v in images.items()}, one.mask, grid.extent,
                               labels=["3 inclusions"])
    path = study.folder / section.key / "three_inclusions.png"
    save_figure(figure, path)
    section.figures.append(("Three-inclusion phantom: truth and each method", relative(path, study)))
    true = region_means(one.truth[0], masks)
    section.numbers["max_region_error_percent"] = {
        m: float(max(np.abs(region_means(images[m], masks)[r] / true[r] - 1).max() for r in true) * 100) for m in METHODS
    }
    section.text.append("The study reports errors below 2 % of the known values with Z-Net. Largest relative error "
                        "over regions and chromophores here: " + ", ".join(
                            f"{m} {v:.1f} %" for m, v in section.numbers["max_region_error_percent"].items()) + ".")
    return section


def eight_fibres(study: Study) -> Section:
    section = Section("eight-fibres", "Generalisation to 8 of the 16 fibres (Fig. S4)")
    section.text.append("Test data from every other fibre (8 sources × 7 detectors × 9 wavelengths). DRI "
                        "reconstructs from those measurements alone; the networks, trained on 16 fibres, receive "
                        "the training mean for the missing ones.")
    test = study.test_set("test")
    methods = ("DRI", "Z-Net", "Y-Net", "Z-Net hybrid", "Z-Net fibre dropout", "LGN", "LGN" + SYMMETRISED, "DRI + U-Net")
    scores = score_methods(study, test, methods, section, "test-split phantoms, 8 fibres", active_fibres=8)
    full = Scores.compute({m: study.reconstruct(test, m) for m in methods}, test.truth, test.mask, test.ids)
    section.tables.append(("Mean PSNR (dB) with all 16 fibres and with 8", psnr_change_table(full, scores, "16 → 8 fibres")))
    loss = {m: float((full.mean(m, "psnr") - scores.mean(m, "psnr")).mean()) for m in methods}
    section.text.append("Mean PSNR lost going from 16 to 8 fibres: " + ", ".join(f"{m} {v:.1f} dB" for m, v in loss.items())
                        + f". A network trained on 16 fibres alone has never seen inputs at the training mean; \"Z-Net "
                        f"fibre dropout\" was trained with `--fibre-dropout {study.scale.fibre_dropout:g}` (random "
                        f"fibre subsets per phantom) for {study.train_config('Z-Net fibre dropout').epochs} epochs, so "
                        "one network serves both.")
    section.numbers["psnr_loss_8_fibres"] = loss
    return section


def no_mri(study: Study) -> Section:
    section = Section("no-mri", "Z-Net without the MRI input (Fig. S5)")
    test = study.test_set("test")
    scores = score_methods(study, test, ("Z-Net", "Z-Net no MRI"), section, "test-split phantoms")
    fixed, phantoms = study.fixed
    grid = study.dataset.config.grid()
    masks = region_masks(phantoms[0], grid, fixed.mask)
    rows = ["| method | " + " | ".join(f"{label} HbT contrast" for label in masks if label != "background") + " |",
            "|---" * (len(masks)) + "|"]
    for name, images in (("truth", fixed.truth[0]),
                         *((m, study.reconstruct(fixed, m)[0]) for m in ("Z-Net", "Z-Net no MRI", "DRI"))):
        cells = [f"{hbt_contrast(images, inside, fixed.mask):.2f}" for label, inside in masks.items() if label != "background"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    section.tables.append(("Three-inclusion phantom: HbT inclusion/background contrast", "\n".join(rows)))
    figure = comparison_figure(fixed.truth[:1], {m: study.reconstruct(fixed, m)[:1] for m in ("Z-Net", "Z-Net no MRI")},
                               fixed.mask, grid.extent, labels=["3 inclusions"])
    path = study.folder / section.key / "three_inclusions.png"
    save_figure(figure, path)
    section.figures.append(("Three-inclusion phantom with and without the MRI input", relative(path, study)))
    gain = mean_row(scores)["Z-Net"] - mean_row(scores)["Z-Net no MRI"]
    section.text.append("Mean PSNR gained by the MRI input (HbO, Hb, water): "
                        + ", ".join(f"{g:+.1f} dB" for g in gain) + ".")
    section.numbers["psnr_gain_from_mri"] = gain.tolist()
    return section


def lesion_contrast(study: Study) -> Section:
    section = Section("lesion-contrast", "Malignant-like vs benign-like lesions: HbT contrast")
    fixed, _ = study.fixed
    grid = study.dataset.config.grid()
    table, contrasts = _contrast_rows(study, METHODS)
    section.tables.append(("HbT mean in the lesion over the rest of the disk (the study, Z-Net on two patients: "
                           + ", ".join(f"{k} {v}" for k, v in STUDY_CONTRAST.items()) + ")", table))
    separated = [m for m in METHODS if contrasts["malignant"][m] > contrasts["benign"][m] + 0.1]
    section.text.append("A 16 mm lesion with HbT contrast 1.5 (malignant-like) or 1.0 (benign-like) in the same "
                        "background. Methods whose contrasts differ by more than 0.1 in the right order: "
                        + (", ".join(separated) or "none") + ".")
    maps = {m: derived_maps(study.reconstruct(fixed, m)[1:], fixed.mask) for m in METHODS}
    figure = comparison_figure(derived_maps(fixed.truth[1:], fixed.mask), maps, fixed.mask, grid.extent,
                               labels=["malignant", "benign"], chromophores=(3, 4))
    path = study.folder / section.key / "lesions.png"
    save_figure(figure, path)
    section.figures.append(("Malignant- and benign-like lesions: HbT and StO2 maps", relative(path, study)))
    section.numbers["hbt_contrast"] = contrasts
    return section


def _robustness(study: Study, name: str, key: str, title: str, text: str, methods=METHODS) -> tuple[Section, Scores]:
    section = Section(key, title)
    section.text.append(text)
    test = study.test_set(name)
    scores = score_methods(study, test, methods, section, f"{name} phantoms")
    reference = study.test_set("test")
    # The test split's data come from the training mesh: DRI on a finer mesh than the data's
    # is not DRI at its best there, and not worth its minutes (3 of the `small` study's).
    matched_methods = tuple(m for m in methods if m != FINE_DRI)
    matched = Scores.compute({m: study.reconstruct(reference, m) for m in matched_methods}, reference.truth, reference.mask)
    section.tables.append(("Mean PSNR (dB) on the matched test split and on this set"
                           + (f" ({FINE_DRI}: this set only)" if FINE_DRI in methods else ""),
                           psnr_change_table(matched, scores, f"test split → {name}", matched_methods)))
    return section, scores


ZNET_VARIANTS = tuple(n for n, recipe in NETWORKS.items() if recipe.model.startswith("znet"))
"""The Z-Net variants of the study (issue #16 compares the learned methods with the best of them)."""
LEARNED = ("LGN", "LGN" + SYMMETRISED, "DRI + U-Net")
"""The learned reconstructions compared with DRI at its best."""


def _best(scores: Scores, names) -> str:
    """The method of `names` with the highest mean PSNR over the three chromophores."""
    return max(names, key=lambda m: float(scores.mean(m, "psnr").mean()))


def _against_best_dri(scores: Scores) -> tuple[str, dict]:
    """Sentences and numbers: each learned method's PSNR against DRI at its best (the better of
    the training mesh and the finer mesh) and against the best Z-Net variant."""
    dri, znet = _best(scores, ("DRI", FINE_DRI)), _best(scores, ZNET_VARIANTS)
    numbers = {"best_dri": dri, "best_znet": znet}
    sentences = []
    for method in LEARNED:
        versus_dri = scores.mean(method, "psnr") - scores.mean(dri, "psnr")
        versus_znet = scores.mean(method, "psnr") - scores.mean(znet, "psnr")
        numbers[method] = {"vs_best_dri": versus_dri.tolist(), "vs_best_znet": versus_znet.tolist()}
        sentences.append(
            f"{method}: " + " / ".join(f"{v:+.1f}" for v in versus_dri) + f" dB (mean {versus_dri.mean():+.2f}) against {dri}, "
            + " / ".join(f"{v:+.1f}" for v in versus_znet) + f" dB (mean {versus_znet.mean():+.2f}) against {znet}")
    return ("Mean PSNR differences (HbO / Hb / water) against DRI at its best here, " + dri + ", and the best Z-Net "
            "variant, " + znet + ": " + "; ".join(sentences) + "."), numbers


def shape_mismatch(study: Study) -> Section:
    return _robustness(
        study, "mismatch", "shape-mismatch", "Robustness: MRI/optical shape mismatch",
        "New phantoms from the study's distribution whose MRI inclusions have their radius changed by up to "
        "±2 mm and their centre moved by up to 2 mm, independently of the optical truth (the networks never saw "
        "such pairs). Z-Net without MRI is unaffected by construction and serves as the reference.",
    )[0]


def fine_mesh(study: Study) -> Section:
    s = study.scale
    section, scores = _robustness(
        study, "fine-mesh", "fine-mesh", "Robustness: data from a finer mesh (no inverse crime)",
        f"New phantoms simulated on a {s.fine_mesh_spacing_mm:g} mm mesh ({study.extra_dataset('fine-mesh').mesh.n_nodes} "
        f"nodes) while DRI reconstructs on, and the networks were trained with, the {s.mesh_spacing_mm:g} mm mesh "
        f"({study.dataset.mesh.n_nodes} nodes). The data are calibrated like measurements: minus the fine mesh's "
        f"homogeneous reference, plus the training reference. \"{FINE_DRI}\" is DRI as a user would run it on such "
        f"data: on a finer {s.dri_mesh_spacing_mm:g} mm reconstruction mesh (still coarser than the data's), the data "
        "calibrated against that mesh's own reference.",
        methods=("DRI", FINE_DRI, *METHODS[1:]),
    )
    text, section.numbers["learned"] = _against_best_dri(scores)
    section.text.append(text)
    terms = _physics_terms(study, "fine-mesh", ("Z-Net", "Z-Net hybrid"))
    gain, error = scores.difference("Z-Net hybrid", "Z-Net")
    section.text.append(
        f"Z-Net hybrid against Z-Net here: {_hybrid_gain(gain, error)} (HbO / Hb / water; ± the paired standard error). "
        f"Physics term of their images (the training loss's: mean square normalised ln A misfit, re-simulated on the "
        f"data's own {s.fine_mesh_spacing_mm:g} mm mesh): Z-Net {terms['Z-Net']:.5f}, Z-Net hybrid "
        f"{terms['Z-Net hybrid']:.5f}; the true images {terms['truth']:.5f} (the noise floor).")
    section.numbers["hybrid"] = {"psnr_gain": gain.tolist(), "psnr_gain_error": error.tolist(), "physics_term": terms}
    return section


def _hybrid_gain(gain, error) -> str:
    """Z-Net hybrid's mean PSNR gain over Z-Net and its standard error (`Scores.difference`), as text."""
    return " / ".join(f"{g:+.3f} ± {e:.3f}" for g, e in zip(gain, error)) + " dB"


def _physics_terms(study: Study, name: str, methods) -> dict[str, float]:
    """The physics-consistency term (`PhysicsLoss`, the training data's normalisation) of each
    method's images of extra test set `name`, and of the true images, on the set's own mesh
    against its own uncalibrated measurements."""
    from ..learned import PhysicsLoss

    data, test = study.extra_dataset(name), study.test_set(name)
    normalisation = study.dataset.normalisation.with_reference(data.reference)
    physics = PhysicsLoss.for_dataset(data, normalisation=normalisation)
    signals = normalisation.signals(data.read("ln_amplitude", test.ids))
    loss = jax.jit(lambda targets, measured: PhysicsLoss.__call__(physics, targets, measured))

    def term(images) -> float:  # in chunks of 16 phantoms (memory), each term a mean over its phantoms
        targets = normalisation.targets(images)
        chunks = [slice(k, k + 16) for k in range(0, len(images), 16)]
        return float(sum(float(loss(targets[c], signals[c])) * len(images[c]) for c in chunks) / len(images))

    return {"truth": term(test.truth)} | {m: term(study.reconstruct(test, m)) for m in methods}


def shapes(study: Study) -> Section:
    s = study.scale
    section = Section("shapes", "Lesion shapes no network was trained on: ellipses, irregular lesions, three inclusions")
    section.text.append(
        f"{s.family_count} phantoms per family (docs/data.md, \"Shape families\"), the study's tissue values and MRI grey "
        f"levels, simulated on the fine {s.fine_mesh_spacing_mm:g} mm mesh and calibrated like measurements (no inverse "
        "crime): every network was trained on one or two circles.")
    methods = ("DRI", FINE_DRI, *METHODS[1:])
    rows = ["| family | method | " + " | ".join(f"PSNR {c}" for c in CHROMOPHORE_LABELS) + " | mean |", "|---|---|---|---|---|---|"]
    for family in SHAPE_FAMILIES:
        test = study.test_set(SHAPES + family)
        scores = score_methods(study, test, methods, section, f"{family} phantoms", part=family)
        for method in methods:
            psnr = scores.mean(method, "psnr")
            rows.append(f"| {family} | {method} | " + " | ".join(f"{v:.1f}" for v in psnr) + f" | {psnr.mean():.1f} |")
        text, section.numbers[family]["learned"] = _against_best_dri(scores)
        section.text.append(f"{family}: {text}")
    section.tables.insert(0, ("Mean PSNR (dB) per shape family", "\n".join(rows)))
    return section


def _contrast_rows(study: Study, methods) -> tuple[str, dict]:
    """Markdown rows of the malignant/benign fixed phantoms' HbT contrast per method, and the values."""
    fixed, phantoms = study.fixed
    grid = study.dataset.config.grid()
    rows = ["| phantom | truth | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    contrasts = {}
    for k in (1, 2):
        lesion = region_masks(phantoms[k], grid, fixed.mask)["lesion"]
        values = {"truth": hbt_contrast(fixed.truth[k], lesion, fixed.mask)}
        values |= {m: hbt_contrast(study.reconstruct(fixed, m)[k], lesion, fixed.mask) for m in methods}
        contrasts[phantoms[k].name] = values
        rows.append(f"| {phantoms[k].name} | " + " | ".join(f"{v:.2f}" for v in values.values()) + " |")
    return "\n".join(rows), contrasts


def _examples_figure(study: Study, section: Section, test: TestSet, images: dict, methods, file: str, what: str) -> None:
    """Truth and `methods` on the first `Scale.examples` phantoms of `test`, added to `section`."""
    grid = study.dataset.config.grid()
    shown = slice(0, min(study.scale.examples, len(test.ids)))
    figure = comparison_figure(test.truth[shown], {m: images[m][shown] for m in methods}, test.mask,
                               grid.extent, labels=[f"#{i}" for i in test.ids[shown]])
    path = study.folder / section.key / file
    save_figure(figure, path)
    section.figures.append((f"Truth and reconstructions, {what}", relative(path, study)))


def refinement(study: Study) -> Section:
    section = Section("refinement", "Physics-consistent refinement of every network")
    steps = study.scale.refine_steps
    section.text.append(f"Each network's images refined by up to {steps} DRI Gauss-Newton steps on the training mesh with "
                        "the prior centred on the network's output (`--refine`), so the final image explains the "
                        "measurement. Rows \"NAME + refine\". Measured on the fine-mesh set, where the data are not "
                        "the training mesh's (refining the test split too took ≈ 3.5 min of the `small` scale's 48).")
    networks = list(NETWORKS)
    refined = [n + REFINED for n in networks]
    gains = {}
    for name in ("fine-mesh",):
        test = study.test_set(name)
        images = {m: study.reconstruct(test, m) for m in ("DRI", *networks, *refined)}
        scores = Scores.compute(images, test.truth, test.mask, test.ids)
        rows = ["| network | " + " | ".join(f"{c.split()[0]} PSNR (dB)" for c in CHROMOPHORE_LABELS) + " | mean change (dB) |",
                "|---|---|---|---|---|"]
        for network in networks:
            before, after = scores.mean(network, "psnr"), scores.mean(network + REFINED, "psnr")
            gains.setdefault(name, {})[network] = float((after - before).mean())
            rows.append(f"| {network} | " + " | ".join(f"{b:.1f} → {a:.1f}" for b, a in zip(before, after))
                        + f" | {(after - before).mean():+.2f} |")
        rows.append("| DRI | " + " | ".join(f"{v:.1f}" for v in scores.mean("DRI", "psnr")) + " | |")
        what = "test split" if name == "test" else "fine-mesh set (no inverse crime)"
        section.tables.append((f"Mean PSNR without → with refinement, {what}, {len(test.ids)} phantoms", "\n".join(rows)))
        _examples_figure(study, section, test, images, ("DRI", "Z-Net", "Z-Net" + REFINED, "Z-Net realistic",
                                                        "Z-Net realistic" + REFINED), f"refined_{name}.png", what)
    table, contrasts = _contrast_rows(study, ["DRI", *[m for pair in zip(networks, refined) for m in pair]])
    section.tables.append(("HbT lesion/background contrast without and with refinement", table))
    error = {m: max(abs(contrasts[p][m] - contrasts[p]["truth"]) for p in contrasts) for m in contrasts["benign"] if m != "truth"}
    section.text.append("Largest lesion-contrast error (of the two lesions) without → with refinement: " + ", ".join(
        f"{n} {error[n]:.2f} → {error[n + REFINED]:.2f}" for n in networks) + f"; DRI {error['DRI']:.2f}.")
    section.numbers |= {"psnr_gain": gains, "contrast_error": error, "hbt_contrast": contrasts}
    return section


def realistic(study: Study) -> Section:
    section = Section("realistic", "Training where the MRI does not give the answer away (`realistic` distribution)")
    section.text.append(
        "\"Z-Net realistic\" is the same Z-Net trained on the `realistic` distribution (docs/data.md: MRI-visible "
        "regions without optical contrast, fibroglandular tissue at its own grey level and optical values, "
        "benign-like lesions, lesions the MRI does not show, lesion-free phantoms, 1 mm shape mismatch) instead "
        "of the study's.")
    methods = ("DRI", "Z-Net", "Z-Net realistic", "Z-Net" + REFINED, "Z-Net realistic" + REFINED)
    for name, what in (("test", "the study's test split"), ("realistic", "the realistic test split")):
        test = study.test_set(name)
        images = {m: study.reconstruct(test, m) for m in methods}
        scores = Scores.compute(images, test.truth, test.mask, test.ids)
        section.tables.append((f"{what}, {len(test.ids)} phantoms: MSE, PSNR, SSIM mean ± std", scores.table()))
        section.numbers[f"mean_psnr_{name}"] = {m: scores.mean(m, "psnr").tolist() for m in methods}
        _examples_figure(study, section, test, images, methods, f"{name}_examples.png", what)
    table, contrasts = _contrast_rows(study, methods)
    section.tables.append(("HbT lesion/background contrast", table))
    section.numbers["hbt_contrast"] = contrasts
    change = np.mean(section.numbers["mean_psnr_test"]["Z-Net realistic"]) - np.mean(section.numbers["mean_psnr_test"]["Z-Net"])
    section.text.append(f"On the study's test split the realistic Z-Net's mean PSNR differs from the study-trained one's by "
                        f"{change:+.2f} dB; HbT contrast "
                        + "; ".join(f"{kind}-like lesion (true {contrasts[kind]['truth']:.2f}): Z-Net {contrasts[kind]['Z-Net']:.2f}, "
                                    f"realistic {contrasts[kind]['Z-Net realistic']:.2f}, refined "
                                    f"{contrasts[kind]['Z-Net realistic' + REFINED]:.2f}" for kind in ("malignant", "benign"))
                        + ".")
    return section


EXPERIMENTS = {
    "test-split": test_split,
    "three-inclusions": three_inclusions,
    "eight-fibres": eight_fibres,
    "no-mri": no_mri,
    "lesion-contrast": lesion_contrast,
    "shape-mismatch": shape_mismatch,
    "fine-mesh": fine_mesh,
    "shapes": shapes,
    "refinement": refinement,
    "realistic": realistic,
}
"""Experiment name → function (`nirst experiment NAME`, and the sections of the report)."""


def _code_fingerprint() -> str:
    """SHA-256 of this package's source files: what the experiments compute and report."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


EXPERIMENTS_CODE = _code_fingerprint()
"""Fingerprint of the experiments' code; a section written by other code is recomputed."""


def run_experiment(study: Study, name: str) -> Section:
    """Run one experiment, or reload its result.json while the experiments' code and every
    reconstruction it was computed from are unchanged (same test set stores, method settings
    and checkpoints). Reconstructions are cached on their own, so recomputing a section only
    reconstructs what is new."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    folder = study.folder / name
    if (folder / "result.json").exists():
        section = Section.load(folder)
        if section.inputs and section.code == EXPERIMENTS_CODE and study.inputs_unchanged(section.inputs):
            return section
    study.inputs = {}
    section = EXPERIMENTS[name](study)
    section.inputs = dict(study.inputs)
    section.code = EXPERIMENTS_CODE
    section.save(folder)
    return section
