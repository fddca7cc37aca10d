"""Stage settings: write what one dataset's per-seed stages run with to runs/<DATASET>/settings/.

One file per section (train.json, generate.json, classify.json): the section resolved for this
dataset (params common, the method's design and benchmark column, the dataset's own blocks)
with base.method, base.device and base.tf32. train, train_val, generate and classify depend on
these files, not on whole params.yaml sections, so a change to another dataset's block reruns
this stage (to the same bytes) but none of them.
"""

from bsegn import cli, paths
from bsegn.config import settings_records
from bsegn.io import save_json


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=False)
    records = settings_records(cli.load_checked(args.params, args.dataset), args.dataset)
    for section, record in records.items():
        save_json(record, paths.settings(args.dataset, section))
    print(f"settings {args.dataset}: wrote {', '.join(str(paths.settings(args.dataset, s)) for s in records)} "
          f"({records['train']['base']['method']}, {records['train']['train']['epochs']} training epochs)")


if __name__ == "__main__":
    cli.run(main)
