"""BSeGN: Balanced Semantic Embedding for Generative zero-shot learning.

A reproducible pipeline: the modules here hold every piece of data, model, training
and evaluation logic; the scripts in ``stages/`` only wire them to DVC.
"""

import os

__version__ = "0.1.0"

# One set of numbers on every x86-64 CPU. PyTorch picks its vector kernels (ATen), its BLAS
# (MKL) and oneDNN code paths by the CPU it finds, and the AVX-512 paths round differently from
# the AVX2 ones: on an AVX-512 machine the committed SYN results came out different (T1 65.38
# against 61.11). Pinned to AVX2, which x86-64 CPUs of the last decade all have, a CPU run gives
# the committed bytes on any of them (tests/test_reproducible.py). MKL's mode is STRICT because
# its plain AVX2 mode still splits matrix products by thread count: 1 and 2 threads trained
# different SYN models, 1, 2 and 4 the same one under STRICT. They are read when torch first
# runs a kernel, so they are set here, before any module of the package imports torch; a value
# already in the environment wins (an opt-out; the results then hold for that machine only).
CPU_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}
for _name, _value in CPU_KERNELS.items():
    os.environ.setdefault(_name, _value)
