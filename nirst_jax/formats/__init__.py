"""Measurement file formats: SNIRF and NIRFAST boundary data (`.paa`)."""

from ._nirfast_data import NirfastData, read_nirfast_data, write_nirfast_data
from ._snirf import SnirfData, read_snirf, write_snirf

__all__ = ["NirfastData", "SnirfData", "read_nirfast_data", "read_snirf", "write_nirfast_data", "write_snirf"]
