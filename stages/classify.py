"""Stage classify: fit the final classifiers and write ZSL / GZSL metrics for one dataset and seed.

Classifier epochs (``classify.select_epochs: val``) and the calibrated-stacking constant
are first chosen on the class-level validation split, with the generator of ``train_val``.
"""

from bsegn import cli, paths
from bsegn.config import base_config, stage_config
from bsegn.data import load_prepared
from bsegn.evaluate import choose_on_validation, evaluate, validation_needed
from bsegn.io import load_npz, save_csv, save_json, save_npz
from bsegn.runtime import resolve_device, seed_everything
from bsegn.trainer import GenerativeModel


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    params = cli.load_checked(args.params, args.dataset)
    cfg = stage_config(params, "classify", args.dataset)
    base = base_config(params)
    device = resolve_device(base.device, base.tf32)
    prepared = paths.prepared(args.dataset)

    selection = None
    if validation_needed(cfg):
        seed_everything(args.seed)
        val_syn = load_npz(paths.val_synthetic(args.dataset, args.seed))
        selection = choose_on_validation(load_prepared(prepared, split="val"),
                           GenerativeModel.load(paths.val_model(args.dataset, args.seed), device),
                           val_syn["x"], val_syn["y"], cfg, device)
    save_json({"selection": selection}, paths.validation(args.dataset, args.seed))

    seed_everything(args.seed)
    model = GenerativeModel.load(paths.model(args.dataset, args.seed), device)
    syn = load_npz(paths.synthetic_features(args.dataset, args.seed))
    metrics, curve, predictions = evaluate(
        load_prepared(prepared), model, syn["x"], syn["y"], cfg, device,
        epochs=selection["epochs"] if selection else None,
        gamma=selection["gamma"] if selection and cfg.calibration else None)
    save_json({"dataset": args.dataset, "seed": args.seed, **metrics}, paths.metrics(args.dataset, args.seed))
    save_csv(curve, paths.classify_log(args.dataset, args.seed))
    save_npz(paths.predictions(args.dataset, args.seed), **predictions)
    cli.save_seconds(paths.seconds(args.dataset, args.seed, "classify"))
    extra = f"  H calibrated {metrics['calibrated']['H']:.1f}" if "calibrated" in metrics else ""
    print(f"classify {args.dataset} seed {args.seed}: wrote {paths.metrics(args.dataset, args.seed)} "
          f"(T1 {metrics['T1']:.1f}  U {metrics['U']:.1f}  S {metrics['S']:.1f}  H {metrics['H']:.1f}{extra})")


if __name__ == "__main__":
    cli.run(main)
