"""Stage train: train the generative model (BSeGN or its switched-off baselines) for one dataset and seed."""

from bsegn import cli, paths
from bsegn.config import base_config, stage_config
from bsegn.data import load_prepared
from bsegn.io import save_csv
from bsegn.runtime import resolve_device, seed_everything
from bsegn.trainer import train


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    params = cli.load_checked(args.params, args.dataset)
    cfg = stage_config(params, "train", args.dataset)
    base = base_config(params)
    device = resolve_device(base.device, base.tf32)
    seed_everything(args.seed)
    bench = load_prepared(paths.prepared(args.dataset))
    ckpt = paths.checkpoint(args.dataset, args.seed, "train")
    model, history = train(bench, cfg, device, label=f"train {args.dataset} seed {args.seed}", checkpoint_path=ckpt)
    model.save(paths.model(args.dataset, args.seed))
    save_csv(history, paths.train_log(args.dataset, args.seed))
    seconds = cli.save_seconds(paths.seconds(args.dataset, args.seed, "train"))
    ckpt.unlink(missing_ok=True)  # outputs are written: the resumable state is no longer needed
    last = history[-1]
    print(f"train {args.dataset} seed {args.seed}: wrote {paths.model(args.dataset, args.seed)} "
          f"({cfg.epochs} epochs on {device} in {seconds:.1f} s, final Wasserstein estimate {last['wasserstein']:.3f})")


if __name__ == "__main__":
    cli.run(main)
