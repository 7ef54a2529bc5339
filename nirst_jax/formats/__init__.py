"""Measurement file formats: SNIRF, NIRFAST boundary data (`.paa`), optode positions (CSV/JSON)."""

from ._nirfast_data import NirfastData, read_nirfast_data, write_nirfast_data
from ._optode_file import read_optodes, write_optodes
from ._snirf import SnirfData, read_snirf, write_snirf

__all__ = [
    "NirfastData",
    "SnirfData",
    "read_nirfast_data",
    "read_optodes",
    "read_snirf",
    "write_nirfast_data",
    "write_optodes",
    "write_snirf",
]
