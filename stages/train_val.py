"""Stage train_val: retrain the generator on the class-level validation split and synthesise
features for its held-out classes (used by classify to choose epochs / calibration)."""

from bsegn import cli, paths, pipeline, trainer
from bsegn.data import load_prepared
from bsegn.io import save_npz


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    run = pipeline.stage_run_config(cli.load_checked(args.params, args.dataset), args.dataset, "train_val")
    val = load_prepared(paths.prepared(args.dataset), split="val")
    ckpt = paths.checkpoint(args.dataset, args.seed, "train_val")
    result = trainer.run_train_val(val, run, args.seed, label=f"train_val {args.dataset} seed {args.seed}",
                                    checkpoint_path=ckpt)
    result.model.save(paths.val_model(args.dataset, args.seed))
    save_npz(paths.val_synthetic(args.dataset, args.seed), x=result.syn_x, y=result.syn_y)
    cli.save_seconds(paths.seconds(args.dataset, args.seed, "train_val"))
    ckpt.unlink(missing_ok=True)  # outputs are written: the resumable state is no longer needed
    print(f"train_val {args.dataset} seed {args.seed}: wrote {paths.val_model(args.dataset, args.seed)} and "
          f"{paths.val_synthetic(args.dataset, args.seed)} ({len(val.seen)} train / {len(val.unseen)} validation classes)")


if __name__ == "__main__":
    cli.run(main)
