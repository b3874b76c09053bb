"""Shapes-QA's relation yes/no questions, per relation word, for each stage of a curriculum.

    python3 -m uniter.diagnostics.relation_by_word RUN [RUN ...] --split DIR [--features DIR] [--model last.pt]

Each RUN is a uniter.finetune QA run (RUN/config.json, RUN/vocab.txt, RUN/answers.json and the
model file, default last.pt: the model a curriculum stage hands on). Every relation yes/no
question of --split is answered; printed per run: accuracy for "above", "below", "left of" and
"right of" and over all four, as a table and (--json) as one JSON object per run. A stage that
learnt one word but not its opposite shows it directly: the opposite word far below chance.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from .. import finetune as ft
from ..model import UniterConfig

RELATIONS = ("above", "below", "left_of", "right_of")


def by_word(run: str, split: str, features: str, model_file: str) -> dict:
    tokens = [t for t in ft.read_lines(os.path.join(run, "vocab.txt")) if t]
    answers = json.load(open(os.path.join(run, "answers.json")))
    cfg = UniterConfig.from_dict(json.load(open(os.path.join(run, "config.json"))))
    data = ft.TaskData("qa", split, features, ft.Tokenizer(tokens, lowercase=True), answers)
    model = ft.build_task_model("qa", cfg, len(answers))
    model.load_state_dict(torch.load(os.path.join(run, model_file), map_location="cpu"))
    idx = [i for i, t in enumerate(data.types) if t == "relation_yesno"]
    res = ft.evaluate(model, "qa", data, idx)
    out = {r: res["relation_yesno_by_relation"].get(r) for r in RELATIONS}
    out.update(all=res["acc"], items=len(idx), run=run, model=model_file)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.relation_by_word", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--split", required=True, help="a task split folder (uniter synth --task qa)")
    ap.add_argument("--features", default=None, help="its region features (default: as uniter.finetune finds them)")
    ap.add_argument("--model", default="last.pt", help="the model file in each RUN (default %(default)s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    features = ft.features_dir(args.split, args.features)
    print(f"{'run':40s} {'items':>6s} " + " ".join(f"{r:>9s}" for r in RELATIONS) + f" {'all':>7s}")
    for run in args.runs:
        r = by_word(run, args.split, features, args.model)
        if args.json:
            print(json.dumps(r))
        else:
            cells = " ".join(f"{100 * r[w]:8.1f}%" if r[w] is not None else f"{'—':>9s}" for w in RELATIONS)
            print(f"{run:40s} {r['items']:6d} {cells} {100 * r['all']:6.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
