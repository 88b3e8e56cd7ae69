"""``vibe-rt train vae|qformer|default``: the two ViBE training stages and the embedded default model."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train the TSC-VAE (stage 1), the Q-Former (stage 2) or the embedded default model",
        description="Train ViBE in two stages. Runs unchanged under torchrun (DistributedDataParallel when "
                    "WORLD_SIZE > 1). Resumes from the state beside --out unless --no-resume.")
    sub = parser.add_subparsers(title="stages", metavar="STAGE", dest="stage")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--epochs", type=int, help="maximum epochs")
        p.add_argument("--batch-size", type=int, help="samples per step (per process)")
        p.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
        p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
        p.add_argument("--val-fraction", type=float, help="fraction of training images held out (default 0.1)")
        p.add_argument("--max-minutes", type=float, help="stop after this wall time")
        p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
        p.add_argument("--threads", type=int, help="torch CPU threads (default $VIBE_RT_THREADS or 2)")
        p.add_argument("--no-resume", action="store_true", help="start from scratch, ignoring saved state")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    vae = sub.add_parser("vae", help="stage 1: TSC-VAE reconstruction of epochs",
                         description="Train the TSC-VAE on DIR/train (MSE + KL with warm-up, early stopping).")
    vae.add_argument("--data", required=True, help="dataset folder (with train/)")
    vae.add_argument("--out", required=True, help="output stage-1 checkpoint stem")
    vae.add_argument("--size", default="tiny", choices=("tiny", "base"), help="TSC-VAE preset")
    vae.add_argument("--vae-config", help='JSON overrides of the TSC-VAE config, e.g. \'{"widths": [8,16,16]}\'')
    vae.add_argument("--beta", type=float, help="final KL weight (default 1e-4)")
    vae.add_argument("--kl-warmup", type=int, help="KL warm-up steps (default 500)")
    vae.add_argument("--inputs", choices=("trials", "average", "subsets"), help="training samples (default trials)")
    common(vae)
    vae.set_defaults(func=run)

    qf = sub.add_parser("qformer", help="stage 2: Q-Former from image tokens to the VAE latent",
                        description="Train the Q-Former (MSE + sliced Wasserstein) with a frozen image encoder "
                                    "and the frozen stage-1 VAE; writes a full ViBE checkpoint.")
    qf.add_argument("--data", required=True, help="dataset folder (with train/ and its images)")
    qf.add_argument("--vae", required=True, help="stage-1 checkpoint")
    qf.add_argument("--encoder", default="vibe-tiny-vit", help="open_clip NAME[:PRETRAINED|PATH]")
    qf.add_argument("--out", required=True, help="output ViBE checkpoint stem")
    qf.add_argument("--size", default="tiny", choices=("tiny", "base"), help="Q-Former preset")
    qf.add_argument("--swd-weight", type=float, help="weight of the SWD term (default 0.1; 0 = MSE only)")
    qf.add_argument("--swd-projections", type=int, help="random directions per step (default 64)")
    qf.add_argument("--target", choices=("average", "repetitions"), help="latent targets (default average)")
    qf.add_argument("--cache", help="image-feature cache folder (default DATA/.features)")
    common(qf)
    qf.set_defaults(func=run)

    de = sub.add_parser("default", help="regenerate the embedded default model and quality numbers",
                        description="Simulate data, train both stages with the tiny encoder, evaluate with "
                                    "baselines and ablations, write vibe_rt/assets/vibe-default.* and "
                                    "benchmarks/results/quality.json (about 12 minutes on 2 CPU cores).")
    de.add_argument("--work-dir", default="data/default-run", help="data, cache and report folder")
    de.add_argument("--assets", help="output checkpoint stem (default vibe_rt/assets/vibe-default)")
    de.add_argument("--results", help="quality JSON (default benchmarks/results/quality.json)")
    de.add_argument("--noise-scale", type=float, help="simulator background-noise scale (default: 0.1 of realistic, "
                    "as the embedded model)")
    de.add_argument("--n-train", type=int, help="simulated training images (default 1500)")
    de.add_argument("--no-ablations", action="store_true", help="skip the ablation mappers")
    de.add_argument("--seed", type=int, default=0)
    de.add_argument("--threads", type=int, default=2)
    de.add_argument("--no-progress", action="store_true")
    de.set_defaults(func=run)

    ab = sub.add_parser("ablations", help="the ablation study: spatial kernel, latent, mapper, SWD weight",
                        description="Train every ablation variant for several seeds on simulated data, score "
                                    "them on fresh-seed test sets with bootstrap CIs and write "
                                    "benchmarks/results/ablations.json (about 14 minutes per seed on 2 cores).")
    ab.add_argument("--work-dir", default="data/ablations", help="data and cache folder")
    ab.add_argument("--results", help="results JSON (default benchmarks/results/ablations.json)")
    ab.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    ab.add_argument("--n-train", type=int, help="simulated training images per seed (default 800)")
    ab.add_argument("--threads", type=int, default=2)
    ab.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def _pick(args: argparse.Namespace, mapping: dict[str, str]) -> dict:
    return {field: getattr(args, arg) for arg, field in mapping.items() if getattr(args, arg, None) is not None}


_COMMON = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "patience": "patience",
           "val_fraction": "val_fraction", "max_minutes": "max_minutes", "seed": "seed"}


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    if args.stage == "vae":
        from ..training.pipeline import train_stage1
        from ..training.stage1 import Stage1Config

        kw = _pick(args, {**_COMMON, "beta": "beta", "kl_warmup": "kl_warmup_steps", "inputs": "inputs",
                          "size": "size"})
        if args.vae_config:
            try:
                kw["vae"] = json.loads(args.vae_config)
            except ValueError as err:
                raise ConfigError(f"--vae-config is not valid JSON ({err})") from err
        res = train_stage1(args.data, args.out, Stage1Config(**kw, progress=not args.no_progress),
                           resume=not args.no_resume, threads=args.threads)
        print(json.dumps({"out": args.out, **res.metrics}))
        return 0
    if args.stage == "qformer":
        from ..training.pipeline import train_stage2
        from ..training.stage2 import Stage2Config

        kw = _pick(args, {**_COMMON, "swd_weight": "swd_weight", "swd_projections": "swd_projections",
                          "target": "target", "size": "qformer_size"})
        _, res2 = train_stage2(args.data, args.vae, args.encoder, args.out,
                               Stage2Config(**kw, progress=not args.no_progress), cache_dir=args.cache,
                               resume=not args.no_resume, threads=args.threads)
        print(json.dumps({"out": args.out, **res2.metrics}))
        return 0
    if args.stage == "default":
        from ..training.default import DefaultConfig, train_default

        kw = {"work_dir": args.work_dir, "seed": args.seed, "threads": args.threads,
              "ablations": not args.no_ablations, "progress": not args.no_progress}
        kw.update(_pick(args, {"assets": "assets", "results": "results", "noise_scale": "noise_scale",
                               "n_train": "n_train"}))
        quality = train_default(DefaultConfig(**kw))
        print(json.dumps({k: quality[k] for k in ("stage1_reconstruction_r", "stage2_encoding_r",
                                                  "ridge_baseline_r", "ablations_r", "noise_ceiling")}))
        return 0
    if args.stage == "ablations":
        from ..training.ablations import AblationConfig, run_ablations

        try:
            seeds = tuple(int(x) for x in args.seeds.split(","))
        except ValueError as err:
            raise ConfigError(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2") from err
        kw = {"work_dir": args.work_dir, "seeds": seeds, "threads": args.threads,
              **_pick(args, {"results": "results", "n_train": "n_train"})}
        results = run_ablations(AblationConfig(**kw))
        print(json.dumps({k: round(v["test_r"], 4) for k, v in results["variants"].items()}))
        return 0
    raise ConfigError("choose a stage: vibe-rt train vae|qformer|default|ablations (see vibe-rt train --help)")
