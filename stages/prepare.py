"""Stage prepare: check and preprocess data/raw/<DATASET> into data/prepared/<DATASET>.npz."""

from bsegn import cli, paths
from bsegn.config import prepare_config
from bsegn.data import prepare, save_prepared


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=False)
    cfg = prepare_config(cli.load_checked(args.params, args.dataset))
    splits = prepare(paths.raw_dir(args.dataset), cfg)
    save_prepared(paths.prepared(args.dataset), splits)
    b = splits["test"]
    print(f"prepare {args.dataset}: wrote {paths.prepared(args.dataset)} ({len(b.seen)} seen / {len(b.unseen)} unseen "
          f"classes, {len(b.train_y)} train / {len(b.test_seen_y)} test-seen / {len(b.test_unseen_y)} test-unseen "
          f"images, d_feat {b.d_feat}, d_att {b.d_att})")


if __name__ == "__main__":
    cli.run(main)
