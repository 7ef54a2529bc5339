"""The study's experiments, `nirst reproduce` and `nirst demo`."""

from ._experiments import EXPERIMENTS, run_experiment
from ._fixed_data import simulate_fixed_phantoms
from ._report import write_report
from ._reproduce import demo, reproduce
from ._scale import SCALES, Scale
from ._scored import write_scores
from ._section import Section
from ._study import METHODS, NETWORKS, Study, TestSet

__all__ = [
    "EXPERIMENTS",
    "METHODS",
    "NETWORKS",
    "SCALES",
    "Scale",
    "Section",
    "Study",
    "TestSet",
    "demo",
    "reproduce",
    "run_experiment",
    "simulate_fixed_phantoms",
    "write_report",
    "write_scores",
]
