"""Stage figures: PNG figures of one dataset x seed run into reports/figures/<DATASET>-seed<S>/."""

from pathlib import Path

from bsegn import cli, paths
from bsegn.data import load_prepared
from bsegn.figures import draw_all
from bsegn.io import load_npz


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    cli.load_checked(args.params, args.dataset)
    bench = load_prepared(paths.prepared(args.dataset))
    syn = load_npz(paths.synthetic_features(args.dataset, args.seed))
    out = Path("reports/figures") / f"{args.dataset}-seed{args.seed}"
    written = draw_all(load_npz(paths.predictions(args.dataset, args.seed)), bench.test_unseen_x, bench.test_unseen_y,
                       syn["x"], syn["y"], out, f"{args.dataset} seed {args.seed}")
    print(f"figures {args.dataset} seed {args.seed}: wrote {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    cli.run(main)
