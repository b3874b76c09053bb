"""MLM probe of a checkpoint: which caption words does it read from the image?

    python3 -m uniter.diagnostics.mlm_probe RUN/ckpt/model_step_N.pt [--work DIR] [--captions 1000]

For colour, shape, size and relation words: the first such word of N validation captions (every
second one) becomes [MASK] and is predicted with the caption's image ("image"), with another
image's regions ("other": a caption 37 places before with another image), with the region features
zeroed ("zeroed", locations kept) and with the locations permuted among the image's regions
("permuted", features kept). Reading the image shows as "image" well above "other" and "zeroed";
reading the locations (sizes, relations) as "image" well above "permuted".
"""
from __future__ import annotations

import os
from typing import Dict

import numpy as np
import torch

from ..data import PretrainDataset, collate
from .common import PROBES, WORD_GROUPS, group_ids, load_model, masked_word_accuracy, study_parser

KINDS = ("colour", "shape", "size", "relation")


def probe(model, ds: PretrainDataset, captions: int = 1000) -> Dict[str, Dict[str, float]]:
    """{kind: {probe: accuracy}} on every second caption of ``ds`` (up to ``captions``)."""
    x = collate([ds[int(c)] for c in np.arange(0, min(len(ds), 2 * captions), 2)], 0)
    out = {}
    for kind in KINDS:
        group = group_ids(ds.vocab.tokens, WORD_GROUPS[kind])
        out[kind] = {how: masked_word_accuracy(model, x, group, ds.vocab.special.mask, how) for how in PROBES}
    return out


def main(argv=None) -> int:
    args = study_parser("mlm_probe", __doc__).parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = PretrainDataset(os.path.join(args.work, "feat-val"), max_text_len=128)
    model = load_model(args.checkpoint, ds)
    for kind, row in probe(model, ds, args.captions).items():
        print(f"{os.path.basename(args.checkpoint)} {kind:8s} " + "  ".join(f"{how} {v:.3f}" for how, v in row.items()),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
