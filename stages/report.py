"""Stage report: aggregate every dataset x seed run into reports/ (results.csv, summary.csv, results.md, runs.csv,
metrics.json)."""

import argparse

from bsegn import cli
from bsegn.config import base_config, load_params
from bsegn.report import HEADLINE, write_reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    base = base_config(load_params(parser.parse_args().params))
    summary = write_reports(base.datasets, base.seeds)
    for _, r in summary.iterrows():
        print(f"report {r['dataset']} ({r['n_seeds']} seed(s)): " +
              "  ".join(f"{k} {r[f'{k}_mean']:.1f}" for k in HEADLINE))
    print("report: wrote reports/results.csv, reports/summary.csv, reports/results.md, reports/runs.csv, "
          "reports/metrics.json")


if __name__ == "__main__":
    cli.run(main)
