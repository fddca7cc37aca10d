"""Stage generate: synthesise generate.syn_num features per unseen class from the trained generator."""

from bsegn import cli, paths, pipeline
from bsegn.data import load_prepared
from bsegn.io import save_npz
from bsegn.model import GenerativeModel, run_generate


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    run = pipeline.stage_run_config(cli.load_checked(args.params, args.dataset), args.dataset, "generate")
    bench = load_prepared(paths.prepared(args.dataset))
    model = GenerativeModel.load(paths.model(args.dataset, args.seed), run.device)
    x, y = run_generate(bench, model, run, args.seed)
    out = paths.synthetic_features(args.dataset, args.seed)
    save_npz(out, x=x, y=y)
    cli.save_seconds(paths.seconds(args.dataset, args.seed, "generate"))
    print(f"generate {args.dataset} seed {args.seed}: wrote {out} ({len(y)} features, "
          f"{run.generate.syn_num} for each of {len(bench.unseen)} unseen classes)")


if __name__ == "__main__":
    cli.run(main)
