"""Plant nine one-line wiring bugs, one at a time, and check the tests catch each.

    python tools/planted_bugs.py                                # prints the report
    python tools/planted_bugs.py --out records/planted_bugs.txt  # and writes it over the record

These are the bugs that once passed the whole suite (issue "One source of truth"). Each is
applied to a copy of the project in a temporary folder (never to the working tree), and the
model-level tests run there; a bug that no test catches makes the script exit 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_wiring.py", "tests/test_trainer.py", "tests/test_losses.py", "tests/test_evaluate.py",
         "tests/test_fast_trainer.py"]

# name -> (file, the line as shipped, the buggy line)
BUGS = {
    "cycle term dropped from the generator loss": (
        "bsegn/trainer.py", 'loss = loss + cfg.cycle_weight * logs["g_cycle"]', "loss = loss"),
    "FEM term dropped from the generator loss": (
        "bsegn/trainer.py", 'loss = loss + cfg.fem_weight * logs["g_fem"]', "loss = loss"),
    "FEM batch without the generated unseen features": (
        "bsegn/trainer.py", "z = [s.noise(len(ub), s.model.generator.d_noise)]\n    classes = [ub]",
        "z = []\n    classes = []"),
    "balance term never added": (
        "bsegn/trainer.py",
        "loss = loss + cfg.balance_weight * losses.balance_loss(logits, s.unseen_mask, s.unseen_mask[labels])",
        "cfg.balance_weight * losses.balance_loss(logits, s.unseen_mask, s.unseen_mask[labels])"),
    "all mFIM scales set to 1": (
        "bsegn/mfim.py", "return [float(ref / lvl.norm(dim=1).mean().clamp_min(1e-12))",
        "return [1.0 + 0 * float(ref / lvl.norm(dim=1).mean().clamp_min(1e-12))"),
    "the semantic level returns the hidden activations": (
        "bsegn/mfim.py", 'out.append(h if name == "hidden" else a_hat)', "out.append(h)"),
    "decoder trained on the wrong targets": (
        "bsegn/trainer.py", "losses.reconstruction_loss(s.model.decoder(xb)[0], s.att[yb])",
        "losses.reconstruction_loss(s.model.decoder(xb)[0], s.att[yb].flip(0))"),
    "semantics-to-feature loss also given to the generator": (
        "bsegn/trainer.py", "if cfg.fem_s2f and not for_generator:", "if cfg.fem_s2f:"),
    "GZSL classifier trained without the real seen features": (
        "bsegn/evaluate.py", "x = torch.cat([feats.train, feats.syn])\n    y_idx = _index(classes, np.concatenate([bench.train_y, syn_y]))",
        "x = feats.syn\n    y_idx = _index(classes, syn_y)"),
}


def run_with_bug(name: str, file: str, shipped: str, buggy: str, tmp: Path) -> tuple[bool, list[str]]:
    """(caught, the failing tests) for one planted bug."""
    copy = tmp / name.replace(" ", "_")
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", ".dvc", "data", "runs", "mutants",
                                                              ".cache", "__pycache__", "reports"))
    path = copy / file
    text = path.read_text()
    if text.count(shipped) != 1:
        raise SystemExit(f"{name}: the shipped line is not found once in {file}; update BUGS")
    path.write_text(text.replace(shipped, buggy))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                         cwd=copy, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(copy)})
    failed = [line.split(" ")[1] for line in res.stdout.splitlines() if line.startswith("FAILED ")]
    return res.returncode != 0, failed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the report here (the record: records/planted_bugs.txt)")
    args = parser.parse_args(argv)
    lines = ["Planted wiring bugs, each applied alone; the model-level tests must fail.",
             f"tests run: {' '.join(TESTS)} (-x: stops at the first failure)", ""]
    print("\n".join(lines), flush=True)  # the report, printed as it is made
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (file, shipped, buggy) in BUGS.items():
            caught, failed = run_with_bug(name, file, shipped, buggy, Path(tmp))
            lines.append(f"{'caught' if caught else 'MISSED'}: {name} ({file})")
            lines += [f"    failed: {t}" for t in failed]
            print("\n".join(lines[-1 - len(failed):]), flush=True)
            if not caught:
                missed.append(name)
    lines += ["", f"{len(BUGS) - len(missed)} of {len(BUGS)} caught"]
    print("\n".join(lines[-2:]))
    if args.out:  # a record is written over only where asked
        Path(args.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
