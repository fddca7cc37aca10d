"""Training checkpoints: a killed ``train`` or ``train_val`` stage resumes where it stopped.

Every ``train.checkpoint_every`` epochs the whole training state (networks, optimisers, the
run's random stream, the gradient-penalty weight, the per-epoch history) is written
atomically to ``.cache/checkpoints/``, outside the DVC outputs; the stage deletes it once its
outputs are written. A restarted run with the same params and data picks it up and, on the
CPU, ends exactly as an uninterrupted run would. A checkpoint from other params, data or
code (the package's source files) is ignored (and overwritten).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import torch

from .io import atomic_path

IGNORED_KEYS = ("checkpoint_every", "epochs")  # may change between the kill and the restart


def _parts(s) -> dict:
    """Everything of a :class:`bsegn.trainer.TrainState` that training changes."""
    parts = {"generator": s.model.generator, "decoder": s.model.decoder, "fem": s.model.fem, "critic": s.D,
             "encoder": s.E, "seen_classifier": s.clf, "opt_g": s.opt_g, "opt_d": s.opt_d, "opt_r": s.opt_r,
             "opt_f": s.opt_f, "feedback": s.model.feedback, "opt_fb": s.opt_fb,
             "embedding": s.model.embedding, "comparator": s.comparator}  # CE-GZSL's; opt_d steps them
    return {k: v for k, v in parts.items() if v is not None}


def code_digest() -> str:
    """SHA-256 over the package's source files: a checkpoint resumes only the code that wrote it
    (one left behind by a killed run must not resume a run of changed code)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _identity(s) -> dict:
    """What must match for a checkpoint to belong to this run: params, data and code."""
    cfg = {k: v for k, v in dataclasses.asdict(s.cfg).items() if k not in IGNORED_KEYS}
    data = [len(s.x), s.x.shape[1], round(float(s.x.double().sum()), 3), round(float(s.att.double().sum()), 6)]
    return {"cfg": cfg, "data": data, "code": code_digest()}


def save(path: Path, s, history: list[dict]) -> None:
    payload = {"identity": _identity(s), "history": history, "random": s.gen.get_state(),
               "gp_weight": s.gp_weight.detach().cpu(), **{k: v.state_dict() for k, v in _parts(s).items()}}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)


def restore(path: Path, s, label: str) -> list[dict]:
    """Load ``path`` into state ``s`` if it belongs to this run; return the epochs done (history)."""
    if not path.exists():
        return []
    payload = torch.load(path, map_location=s.x.device, weights_only=True)
    if payload["identity"] != _identity(s):
        print(f"{label}: ignoring checkpoint {path} (other params, data or code)", file=sys.stderr)
        return []
    for name, part in _parts(s).items():
        part.load_state_dict(payload[name])
    s.gen.set_state(payload["random"].cpu())
    s.gp_weight.copy_(payload["gp_weight"])  # moved by gp_adaptive
    history = payload["history"]
    print(f"{label}: resuming after epoch {len(history)} from {path}", file=sys.stderr)
    return history
