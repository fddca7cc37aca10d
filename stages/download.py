"""Stage download: obtain one dataset's raw xlsa17-format files into data/raw/<DATASET>/."""

from bsegn import cli, paths
from bsegn.config import download_config
from bsegn.download import fetch_dataset


def main() -> None:
    args = cli.stage_args(__doc__, per_seed=False)
    params = cli.load_checked(args.params, args.dataset)
    cfg = download_config(params)
    info = fetch_dataset(args.dataset, cfg.sources[args.dataset], paths.raw_dir(args.dataset),
                         cfg.cache_dir, timeout_s=cfg.timeout_s, retries=cfg.retries)
    digest = info.get("archive_sha256", "")[:12] or "-"
    print(f"download {args.dataset}: wrote {paths.raw_dir(args.dataset)} ({info['kind']}, archive sha256 {digest})")


if __name__ == "__main__":
    cli.run(main)
