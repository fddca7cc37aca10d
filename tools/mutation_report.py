"""Summarise the last ``mutmut run``, every survivor with a reason (the record: records/mutation.txt).

    OMP_NUM_THREADS=1 mutmut run --max-children 2
    python tools/mutation_report.py                            # prints the report
    python tools/mutation_report.py --out records/mutation.txt  # and writes it over the record

Survivors are sorted into the kinds below by what the mutation changed; the rest must be
listed in ``EQUIVALENT`` with why they cannot change a result. A survivor of no kind makes
the script exit 1: either a test is missing or a reason is.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

KINDS = {
    "cuda": "CUDA-only path (graph capture, run streams, fused/capturable Adam): inactive on the CPU "
            "where mutmut runs, and speed-only (eager replay and unfused Adam compute the same). "
            "tests/test_fast_trainer.py's CUDA tests check the captured path's losses on a GPU.",
    "device": "device argument: None is the CPU default, identical where the tests run; a wrong "
              "device on a GPU fails loudly (tensors on two devices).",
    "text": "text only: an error message, a progress label or a log name.",
    "falsy": "None in place of False: both falsy, the same branch is taken.",
    "equivalent": "equivalent mutant, reason given per line.",
}

# mutants whose change cannot alter any result, and why (keyed by the mutated line's change)
EQUIVALENT = {
    r"set_to_none=(None|False)": "zero_grad: gradients set to zero instead of None; the same step",
    r"requires_grad_\(True\)": "the frozen classifier is in no optimiser; its weights never move either way",
    r"full\(\(len\(att\),\), (-1, device|\+1|-2)": "seen_index of unseen classes is never read (only seen labels index it); "
                                                    "-1 infers int64 without dtype",
    r'term != "EPOCH"': "the epoch number is then also checked: a finite integer far below 1e8",
    r"abs\(value\) < DIVERGED": "boundary: a loss of exactly 1e8",
    r"round\(v, 7\)": "log precision: the loss log keeps 7 decimals instead of 6",
    r"isinstance\(v, float\)\) or True": "round() of an int is the same int",
    r"selection = \"\"": "an empty string is falsy like None",
    r"\.to\(None\)": "Tensor.to(None) returns the tensor unchanged; the dtype is already right",
    r"grad\.norm\((None, )?dim=1\)": "the default norm is the 2-norm",
    r'float\("-INF"\)': 'float() parses "-INF" as minus infinity',
    r"zeros\(\(\), device=values\.device\)": "the default dtype is the float32 of the values",
    r"np\.linspace\(0, 1, \)|n: int = 42": "gamma grid density (50 or 42 quantiles instead of 41): the search is "
                                           "over a finer grid; the selection rule is tested",
    r"cls_weight >= 0|cls_weight > 0\) or True": "with cls_weight 0 the seen classifier is pretrained but "
                                                  "weighted 0 in G's loss (no shipped config has 0)",
    r"normalize\(b, \)": "F.normalize's default dim is 1, the one given",
    r"dtype=None": "without a dtype, torch infers int64 from an int fill and float32 for zeros: the same",
    r"fast: bool = False|cfg\.beta1, (None)?\)": "cuda",
}


# survivors a test written after the run's test map kills (mutmut maps tests to functions once,
# at the start of a full run; checked by hand by applying the mutant and running the test)
KILLED_SINCE = {
    "bsegn.trainer.x_train_many__mutmut_15": "tests/test_fast_trainer.py::test_epoch_hook_sees_every_epoch "
                                             "(train_many's on_epoch) fails with it",
}


def survivors() -> list[str]:
    out = subprocess.run(["mutmut", "results"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line.split(":")[0].strip() for line in out.splitlines() if line.strip().endswith(": survived")]


def change(name: str) -> tuple[str, str]:
    """(line before, line after) of one mutant."""
    shown = subprocess.run(["mutmut", "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    minus = [l[1:].strip() for l in shown.splitlines() if l.startswith("-") and not l.startswith("---")]
    plus = [l[1:].strip() for l in shown.splitlines() if l.startswith("+") and not l.startswith("+++")]
    return (minus[0] if minus else ""), (plus[0] if plus else "")


def kind(name: str, before: str, after: str) -> tuple[str, str]:
    if name in KILLED_SINCE:
        return "equivalent", "not equivalent, but killed since: " + KILLED_SINCE[name]
    strings_before, strings_after = re.findall(r'"[^"]*"', before), re.findall(r'"[^"]*"', after)
    if strings_before != strings_after and re.sub(r'"[^"]*"', '""', before) == re.sub(r'"[^"]*"', '""', after):
        return "text", ""
    if re.search(r"label, None\)|, None, on_epoch|device=None|, None\)\], graphs", after) and "on_epoch)" in before \
            and "label, None)" not in after:
        return ("text", "") if ", None, on_epoch" in after else ("device", "")
    if "ǁ_Runǁ" in name or re.search(r"graphs|current_stream|fused|capturable", before):
        return "cuda", ""
    for pattern, why in EQUIVALENT.items():
        if re.search(pattern, after) and why == "cuda":
            return "cuda", ""
        if re.search(pattern, after):
            return "equivalent", why
    if re.search(r"Error\(|label|Progress\(|progress\.|run \{i", before):
        return "text", ""
    if re.search(r"'lr'", before):
        return "text", ""
    if "device" in before and ("device=None" in after or "(None)" in after or "device" not in after
                               or after.count("device") < before.count("device")):
        return "device", ""
    if re.search(r"for_generator|per_sample", before) and "None" in after:
        return "falsy", ""
    return "", ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the report here (the record: records/mutation.txt)")
    args = parser.parse_args(argv)
    results = subprocess.run(["mutmut", "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True).stdout
    statuses = Counter(line.rsplit(":", 1)[1].strip() for line in results.splitlines() if ":" in line)
    names = survivors()
    grouped: dict[str, list[str]] = defaultdict(list)
    unexplained = []
    for name in names:
        before, after = change(name)
        k, why = kind(name, before, after)
        line = f"  {name}\n      {before}\n   -> {after}" + (f"\n      why: {why}" if why else "")
        if k:
            grouped[k].append(line)
        else:
            unexplained.append(line)
    n_total = sum(statuses.values())
    killed = statuses.get("killed", 0) + statuses.get("timeout", 0)
    lines = [
        "Mutation testing: mutmut 3.8.1 over bsegn/losses.py, bsegn/trainer.py, bsegn/mfim.py, bsegn/evaluate.py",
        "command: OMP_NUM_THREADS=1 mutmut run --max-children 2   (configuration: pyproject.toml [tool.mutmut])",
        f"mutants: {n_total}; by status: {dict(sorted(statuses.items()))}",
        f"killed (incl. timeouts): {killed} of {n_total} = {100 * killed / n_total:.1f}%",
        f"survivors: {len(names)}, each listed below with why it is harmless"
        + (f"; {len(unexplained)} WITHOUT A REASON" if unexplained else ""),
        "",
    ]
    for k, items in grouped.items():
        lines += [f"== {k} ({len(items)}): {KINDS[k]}", *items, ""]
    if unexplained:
        lines += [f"== no reason yet ({len(unexplained)}): add a test or a reason", *unexplained, ""]
    if args.out:  # a record is written over only where asked
        Path(args.out).write_text("\n".join(lines) + "\n")
        print("\n".join(lines[:6]))
        for line in unexplained:
            print(line)
        print(f"wrote {args.out}")
    else:
        print("\n".join(lines))
    sys.exit(1 if unexplained else 0)


if __name__ == "__main__":
    main()
