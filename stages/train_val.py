"""Stage train_val: retrain the generator on the class-level validation split and synthesise
features for its held-out classes (used by classify to choose epochs / calibration)."""

from bsegn import cli, paths
from bsegn.config import base_config, stage_config
from bsegn.data import load_prepared
from bsegn.io import save_npz
from bsegn.runtime import resolve_device
from bsegn.validation import train_on_validation


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    params = cli.load_checked(args.params, args.dataset)
    val = load_prepared(paths.prepared(args.dataset), split="val")
    ckpt = paths.checkpoint(args.dataset, args.seed, "train_val")
    base = base_config(params)
    model, x, y = train_on_validation(val, stage_config(params, "train", args.dataset),
                                      stage_config(params, "generate", args.dataset), args.seed,
                                      resolve_device(base.device, base.tf32),
                                      label=f"train_val {args.dataset} seed {args.seed}", checkpoint_path=ckpt)
    model.save(paths.val_model(args.dataset, args.seed))
    save_npz(paths.val_synthetic(args.dataset, args.seed), x=x.cpu().numpy(), y=y.cpu().numpy())
    cli.save_seconds(paths.seconds(args.dataset, args.seed, "train_val"))
    ckpt.unlink(missing_ok=True)  # outputs are written: the resumable state is no longer needed
    print(f"train_val {args.dataset} seed {args.seed}: wrote {paths.val_model(args.dataset, args.seed)} and "
          f"{paths.val_synthetic(args.dataset, args.seed)} ({len(val.seen)} train / {len(val.unseen)} validation classes)")


if __name__ == "__main__":
    cli.run(main)
