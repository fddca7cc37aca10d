"""Stage train: train the generative model (BSeGN or its switched-off baselines) for one dataset and seed."""

from bsegn import cli, paths, pipeline, trainer
from bsegn.data import load_prepared
from bsegn.io import save_csv


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    run = pipeline.stage_run_config(cli.load_checked(args.params, args.dataset), args.dataset, "train")
    bench = load_prepared(paths.prepared(args.dataset))
    ckpt = paths.checkpoint(args.dataset, args.seed, "train")
    model, history = trainer.run_train(bench, run, args.seed, label=f"train {args.dataset} seed {args.seed}",
                                        checkpoint_path=ckpt)
    model.save(paths.model(args.dataset, args.seed))
    save_csv(history, paths.train_log(args.dataset, args.seed))
    seconds = cli.save_seconds(paths.seconds(args.dataset, args.seed, "train"))
    ckpt.unlink(missing_ok=True)  # outputs are written: the resumable state is no longer needed
    print(f"train {args.dataset} seed {args.seed}: wrote {paths.model(args.dataset, args.seed)} "
          f"({run.train.epochs} epochs on {run.device} in {seconds:.1f} s, "
          f"final Wasserstein estimate {history[-1]['wasserstein']:.3f})")


if __name__ == "__main__":
    cli.run(main)
