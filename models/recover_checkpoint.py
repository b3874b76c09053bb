#!/usr/bin/env python3
"""Recovers a trainable checkpoint from a bundle, to fine-tune a shipped model further:

    /usr/bin/python3 models/recover_checkpoint.py --bundle bundles/shapes-uniter --out RUN
    /usr/bin/python3 models/pretrain.py --init RUN/final.pt --config RUN/config.json ...

writes RUN/final.pt (official layout), RUN/final.json (where it came from; the state-dict keys no
graph holds, freshly initialised: the MRFR head and the [MASK] region embedding) and
RUN/config.json. Every weight the graphs hold comes back bit for bit: the recovered model is
exported again and compared with the bundle's graphs (models/uniter/recover.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uniter.pretrain import save_checkpoint  # noqa: E402
from uniter.recover import recover  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="bundle folder (manifest.json, encoder.onnx, mlm_head.onnx, mrc_head.onnx)")
    ap.add_argument("--out", required=True, help="folder for final.pt, final.json and config.json")
    ap.add_argument("--seed", type=int, default=0, help="initialisation of the weights no graph holds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        model, fresh = recover(args.bundle, seed=args.seed)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{args.bundle}: {e}")
    with open(os.path.join(args.bundle, "manifest.json")) as f:
        manifest = json.load(f)
    cfg = model.config
    config = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k != "extra"}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_checkpoint(model, os.path.join(args.out, "final.pt"), {
        "recovered_from": os.path.abspath(args.bundle), "bundle_name": manifest.get("name"),
        "bundle_provenance": manifest.get("provenance"), "config": config,
        "freshly_initialised": fresh, "seed": args.seed})
    print(f"wrote {args.out}/final.pt ({len(fresh)} keys no graph holds, freshly initialised: {fresh})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
