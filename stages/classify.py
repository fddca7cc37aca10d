"""Stage classify: fit the final classifiers and write ZSL / GZSL metrics for one dataset and seed."""

from bsegn import cli, paths
from bsegn.config import base_config, stage_config
from bsegn.data import load_prepared
from bsegn.evaluate import evaluate
from bsegn.io import load_npz, save_csv, save_json
from bsegn.runtime import resolve_device, seed_everything
from bsegn.trainer import GenerativeModel


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    params = cli.load_checked(args.params, args.dataset)
    cfg = stage_config(params, "classify", args.dataset)
    device = resolve_device(base_config(params).device)
    seed_everything(args.seed)
    bench = load_prepared(paths.prepared(args.dataset))
    model = GenerativeModel.load(paths.model(args.dataset, args.seed), device)
    syn = load_npz(paths.synthetic_features(args.dataset, args.seed))
    metrics, curve = evaluate(bench, model, syn["x"], syn["y"], cfg, device)
    save_json({"dataset": args.dataset, "seed": args.seed, **metrics}, paths.metrics(args.dataset, args.seed))
    save_csv(curve, paths.classify_log(args.dataset, args.seed))
    print(f"classify {args.dataset} seed {args.seed}: wrote {paths.metrics(args.dataset, args.seed)} "
          f"(T1 {metrics['T1']:.1f}  U {metrics['U']:.1f}  S {metrics['S']:.1f}  H {metrics['H']:.1f})")


if __name__ == "__main__":
    cli.run(main)
