"""Do a task model's final region states still say where each region is?

    python3 -m uniter.diagnostics.task_location_readout RUN [RUN ...] --split DIR --features DIR [--vocab V]

For each uniter.finetune run (RUN/final.pt with RUN/config.json and RUN/vocab.txt; a RUN whose
final.pt is a pre-training checkpoint, e.g. the recovered init, is read into the task's class
with its head left random), 600 QA items of --split are encoded and a ridge regression from each
region's final hidden state to its box centre (x and y, fractions of the image) is fitted on 70%
of the regions and scored (R²) on the rest. A model that compares positions needs them there;
the embedding's own share is printed beside it: across regions, how much of the location
embedding's energy varies (the rest is a constant vector the location adds to every region).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Dict

import numpy as np
import torch

from .. import finetune as ft
from ..model import UniterConfig

ITEMS = 600


def load_run(run: str, answers: int, vocab_size: int):
    cfg = UniterConfig.from_dict(dict(json.load(open(os.path.join(run, "config.json"))), vocab_size=vocab_size))
    model = ft.build_task_model("qa", cfg, answers)
    model.init_weights(0)
    sd = torch.load(os.path.join(run, "final.pt"), map_location="cpu")
    if any(k.startswith("vqa_output.") for k in sd):
        model.load_state_dict(sd)
    else:
        ft.init_from_pretrained(model, sd)
    return model.eval(), cfg


def r2(x: np.ndarray, y: np.ndarray, train: np.ndarray, ridge: float = 1e-2) -> float:
    x = np.c_[x, np.ones(len(x))]
    w = np.linalg.solve(x[train].T @ x[train] + ridge * np.eye(x.shape[1]), x[train].T @ y[train])
    p, t = x[~train] @ w, y[~train]
    return float(1 - ((p - t) ** 2).sum() / ((t - t.mean()) ** 2).sum())


def readout(run: str, split: str, features: str, vocab: str) -> Dict[str, float]:
    answers = [a for a in ft.read_lines(os.path.join(split, "qa_answers.txt")) if a]
    tokens = [t for t in ft.read_lines(vocab or os.path.join(run, "vocab.txt")) if t]
    model, cfg = load_run(run, len(answers), len(tokens))
    data = ft.TaskData("qa", split, features, ft.Tokenizer(tokens), answers, max_items=ITEMS, seed=0)
    states, locs = [], []
    with torch.no_grad():
        for s in range(0, len(data), 50):
            b = data.batch(list(range(s, min(s + 50, len(data)))))
            hidden = model.uniter(b["input_ids"], b["text_mask"], b["img_feat"], b["img_loc"], b["img_mask"])[0]
            T = b["input_ids"].shape[1]
            for k in range(hidden.shape[0]):
                n = int(b["img_mask"][k].sum())
                states.append(hidden[k, T:T + n].numpy())
                locs.append(b["img_loc"][k, :n].numpy())
        emb = model.uniter.img_embeddings
        loc = torch.from_numpy(np.concatenate(locs))
        pos = emb.pos_layer_norm(emb.pos_linear(loc))
    h, loc = np.concatenate(states), loc.numpy()
    train = np.random.default_rng(0).random(len(h)) < 0.7
    varying = float(pos.var(0).sum() / (pos.var(0).sum() + (pos.mean(0) ** 2).sum()))
    return {"regions": len(h), "x_centre_r2": r2(h, (loc[:, 0] + loc[:, 2]) / 2, train),
            "y_centre_r2": r2(h, (loc[:, 1] + loc[:, 3]) / 2, train), "location_embedding_varying": varying}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.task_location_readout",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--split", required=True, help="a split folder with qa.jsonl (uniter synth --task qa)")
    ap.add_argument("--features", required=True, help="its uniter extract output (regions.npz)")
    ap.add_argument("--vocab", default="", help="the task vocabulary (default: RUN/vocab.txt; give a task "
                                                "run's for a pre-training checkpoint)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for run in args.runs:
        print(json.dumps({"run": run, **readout(run, args.split, args.features, args.vocab)}))


if __name__ == "__main__":
    main()
