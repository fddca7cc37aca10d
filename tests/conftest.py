"""Loaded before every test module: bsegn first, so its CPU-kernel pin (bsegn.CPU_KERNELS) is in
the environment before any test module imports torch."""

import bsegn  # noqa: F401
