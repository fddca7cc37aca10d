"""Seed and device handling; both come from params, never from hidden globals."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

from .config import ConfigError


def resolve_device(name: str, tf32: bool = False) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is an error.

    ``tf32`` (``base.tf32``) lets CUDA run float32 matrix products in TF32 on the tensor
    cores; the CPU is unaffected.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("base.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cpu":
        check_cpu_kernels()
    torch.backends.cuda.matmul.allow_tf32 = tf32 and device.type == "cuda"
    torch.backends.cudnn.allow_tf32 = tf32 and device.type == "cuda"
    return device


def check_cpu_kernels() -> str:
    """Warn when PyTorch's CPU kernels are not the AVX2 ones that ``bsegn`` pins (its
    ``CPU_KERNELS``): torch was imported before bsegn, or the environment chose others. Returns
    the capability in use."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        warnings.warn(f"PyTorch runs its {capability} CPU kernels, not AVX2 ones: their rounding differs, "
                      f"and training amplifies it, so results differ from the committed ones (ATEN_CPU_CAPABILITY="
                      f"{os.environ.get('ATEN_CPU_CAPABILITY', 'unset')}; import bsegn before torch, which "
                      "pins AVX2, or unset it)", stacklevel=2)
    return capability


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices).

    On the CPU the same seed gives bit-identical results (deterministic kernels are
    requested); on CUDA some kernels stay nondeterministic, so expect small differences.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # deterministic mode also fills every new tensor with NaN to expose reads of uninitialised
    # memory; nothing here reads such memory, and on a GPU the fills cost as much as the work
    torch.utils.deterministic.fill_uninitialized_memory = False
