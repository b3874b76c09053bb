"""Does a trained UNITER use the 7-d region locations? The minimal-edit probe of the ITM head.

    python3 -m uniter.diagnostics.location_probe RUN/final.pt [--work DIR] [--features DIR]

On 1,000 validation captions with their own image (positives) and with minimal edits of captions
that are false on their image (negatives, up to 300 per kind of edit: colour, shape, size, count,
relation; false_captions.jsonl from `uniter extract`), the ITM head's P(match) is computed with
the regions' true locations, with the locations permuted among the image's regions (each feature
keeps a wrong box) and with all locations zeroed. A model that reads positions and sizes rejects
relation and size edits and loses confidence when locations are permuted.
"""
from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional

import torch

from ..data import PretrainDataset, collate
from .common import DEFAULT_WORK, load_model, permute_locations

HOWS = ("true", "permuted", "zeroed")


@torch.no_grad()
def p_match(model, samples: List[dict], how: str, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """The ITM head's P(match) of each sample, with its locations as ``how`` says (permuted with
    ``gen``, None: torch's global generator)."""
    x = collate(samples, 0)
    loc = x["img_loc"]
    if how == "permuted":
        loc = permute_locations(loc, x["img_mask"], gen)
    elif how == "zeroed":
        loc = torch.zeros_like(loc)
    elif how != "true":
        raise ValueError(f"locations {how!r}: want one of {HOWS}")
    _, pooled, _ = model.uniter(x["input_ids"], x["text_mask"], x["img_feat"], loc, x["img_mask"])
    return torch.softmax(model.itm_output(pooled), -1)[:, 1]


def edits_by_kind(ds: PretrainDataset, per_kind: int) -> Dict[str, List[dict]]:
    """Up to ``per_kind`` false captions of each kind of minimal edit, with their image."""
    out: Dict[str, List[dict]] = {}
    for f, e in enumerate(ds.false_captions):
        if e.get("edit") not in (None, "random") and len(out.setdefault(e["edit"], [])) < per_kind:
            out[e["edit"]].append(ds.false_pair(f))
    return dict(sorted(out.items()))


def probe(model, ds: PretrainDataset, positives: int = 1000, per_kind: int = 300,
          gen: Optional[torch.Generator] = None):
    """{how: {"accepted", "mean_p", "rejected": {edit kind: share}}}."""
    pos = [ds[c] for c in range(0, min(len(ds), 2 * positives), 2)]
    kinds = edits_by_kind(ds, per_kind)
    out = {}
    for how in HOWS:
        p = p_match(model, pos, how, gen)
        out[how] = {"accepted": float((p > 0.5).float().mean()), "mean_p": float(p.mean()),
                    "rejected": {k: float((p_match(model, ss, how, gen) <= 0.5).float().mean())
                                 for k, ss in kinds.items()}}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.location_probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", metavar="CKPT", help="RUN/final.pt or RUN/ckpt/model_step_N.pt")
    ap.add_argument("--work", default=DEFAULT_WORK, metavar="DIR", help="train-shapes.sh's work folder (default %(default)s)")
    ap.add_argument("--features", metavar="DIR",
                    help="validation features with false_captions.jsonl (default WORK/feat-val)")
    ap.add_argument("--positives", type=int, default=1000, help="true pairs: every second caption (default %(default)s)")
    ap.add_argument("--per-kind", type=int, default=300, help="false captions per kind of edit (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default %(default)s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the permutations come from the global generator, seeded before the model is built
    ds = PretrainDataset(args.features or os.path.join(args.work, "feat-val"), max_text_len=128)
    if not ds.false_captions:
        raise SystemExit(f"{ds.root} has no false_captions.jsonl (uniter extract writes it)")
    model = load_model(args.checkpoint, ds)
    print(args.checkpoint)
    for how, r in probe(model, ds, args.positives, args.per_kind).items():
        row = [f"positives accepted {r['accepted']:.3f} (mean P {r['mean_p']:.3f})"]
        row += [f"{kind} edits rejected {v:.3f}" for kind, v in r["rejected"].items()]
        print(f"  locations {how:8s}: " + ", ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
