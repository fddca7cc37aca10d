"""Stage classify: fit the final classifiers and write ZSL / GZSL metrics for one dataset and seed.

Classifier epochs (``classify.select_epochs: val``) and the calibrated-stacking constant
are first chosen on the class-level validation split, with the generator of ``train_val``.
"""

from bsegn import cli, evaluate, paths, pipeline
from bsegn.data import load_prepared
from bsegn.io import load_npz, save_csv, save_json, save_npz
from bsegn.model import GenerativeModel


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    ds, seed = args.dataset, args.seed
    run = pipeline.stage_run_config(cli.load_checked(args.params, ds), ds, "classify")
    validation = None
    if evaluate.validation_needed(run.classify):
        val_syn = load_npz(paths.val_synthetic(ds, seed))
        validation = pipeline.Validation(load_prepared(paths.prepared(ds), split="val"),
                                         GenerativeModel.load(paths.val_model(ds, seed), run.device),
                                         val_syn["x"], val_syn["y"])
    syn = load_npz(paths.synthetic_features(ds, seed))
    metrics, curve, predictions, selection = evaluate.run_classify(
        load_prepared(paths.prepared(ds)), GenerativeModel.load(paths.model(ds, seed), run.device),
        syn["x"], syn["y"], run, seed, validation)
    save_json({"selection": selection}, paths.validation(ds, seed))
    save_json({"dataset": ds, "seed": seed, **metrics}, paths.metrics(ds, seed))
    save_csv(curve, paths.classify_log(ds, seed))
    save_npz(paths.predictions(ds, seed), **predictions)
    cli.save_seconds(paths.seconds(ds, seed, "classify"))
    extra = f"  H calibrated {metrics['calibrated']['H']:.1f}" if "calibrated" in metrics else ""
    print(f"classify {ds} seed {seed}: wrote {paths.metrics(ds, seed)} "
          f"(T1 {metrics['T1']:.1f}  U {metrics['U']:.1f}  S {metrics['S']:.1f}  H {metrics['H']:.1f}{extra})")


if __name__ == "__main__":
    cli.run(main)
