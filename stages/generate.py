"""Stage generate: synthesise generate.syn_num features per unseen class from the trained generator."""

import torch

from bsegn import cli, paths
from bsegn.config import base_config, stage_config
from bsegn.data import load_prepared
from bsegn.io import save_npz
from bsegn.runtime import resolve_device, seed_everything
from bsegn.trainer import GenerativeModel, generate


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=True)
    params = cli.load_checked(args.params, args.dataset)
    cfg = stage_config(params, "generate", args.dataset)
    base = base_config(params)
    device = resolve_device(base.device, base.tf32)
    seed_everything(args.seed)
    bench = load_prepared(paths.prepared(args.dataset))
    model = GenerativeModel.load(paths.model(args.dataset, args.seed), device)
    x, y = generate(model, torch.as_tensor(bench.att, device=device), torch.as_tensor(bench.unseen, device=device),
                    cfg.syn_num)
    out = paths.synthetic_features(args.dataset, args.seed)
    save_npz(out, x=x.cpu().numpy(), y=y.cpu().numpy())
    cli.save_seconds(paths.seconds(args.dataset, args.seed, "generate"))
    print(f"generate {args.dataset} seed {args.seed}: wrote {out} ({len(y)} features, "
          f"{cfg.syn_num} for each of {len(bench.unseen)} unseen classes)")


if __name__ == "__main__":
    cli.run(main)
