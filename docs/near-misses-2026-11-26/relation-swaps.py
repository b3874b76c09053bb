"""Builds a training directory whose only text negatives are relation swaps.

relation-swaps.py FEAT_DIR SPLIT_DIR OUT_DIR: OUT_DIR links FEAT_DIR's regions, captions, truth
and vocabulary, and gets a false_captions.jsonl holding, for every relation caption of FEAT_DIR,
the caption with its relation word swapped for the converse (left of <-> right of, above <->
below) when that is false on the caption's own image. Truth follows shapes.Holds: box centres,
margin 5% of the image side; the swap is false when no object matching A stands in the converse
relation to another object matching B. With pretrain.py --itm-text-negatives P, a share P of
the ITM negatives are then relation swaps (a caption without its own swap takes another
caption's swap of the same image, itself a relation swap)."""
import json
import os
import sys

MARGIN = 0.05
CONVERSE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}


def matches(spec, o):
    return all(spec.get(k) in (None, "", o[k]) for k in ("shape", "color", "size"))


def holds(rel, a, b, w, h):
    ax, ay = (a["box"][0] + a["box"][2]) / 2, (a["box"][1] + a["box"][3]) / 2
    bx, by = (b["box"][0] + b["box"][2]) / 2, (b["box"][1] + b["box"][3]) / 2
    return {"left_of": ax < bx - MARGIN * w, "right_of": ax > bx + MARGIN * w,
            "above": ay < by - MARGIN * h, "below": ay > by + MARGIN * h}[rel]


def evaluate(lf, rec):
    objs = rec["objects"]
    return any(i != j and matches(lf["a"], a) and matches(lf["b"], b) and holds(lf["rel"], a, b, rec["width"], rec["height"])
               for i, a in enumerate(objs) for j, b in enumerate(objs))


def main(feat, split, out):
    vocab = [l.rstrip("\n") for l in open(os.path.join(feat, "vocab.txt"), encoding="utf-8")]
    tok = {t: i for i, t in enumerate(vocab)}
    swap = {tok["left"]: tok["right"], tok["right"]: tok["left"], tok["above"]: tok["below"], tok["below"]: tok["above"]}
    recs = [json.loads(l) for l in open(os.path.join(split, "annotations.jsonl"), encoding="utf-8")]
    os.makedirs(out, exist_ok=True)
    for f in ("regions.npz", "captions.jsonl", "truth.npz", "vocab.txt"):
        dst = os.path.join(out, f)
        if not os.path.lexists(dst):
            os.symlink(os.path.abspath(os.path.join(feat, f)), dst)
    n = kept = 0
    with open(os.path.join(out, "false_captions.jsonl"), "w", encoding="utf-8") as fo:
        for c, line in enumerate(open(os.path.join(feat, "captions.jsonl"), encoding="utf-8")):
            cap = json.loads(line)
            lf = cap["lf"]
            if lf["op"] != "relation":
                continue
            n += 1
            rec = recs[cap["image"]]
            assert evaluate(lf, rec), f"caption {c} false on its own image"
            inv = dict(lf, rel=CONVERSE[lf["rel"]])
            if evaluate(inv, rec):
                continue
            ids = [swap.get(t, t) for t in cap["input_ids"]]
            assert sum(a != b for a, b in zip(ids, cap["input_ids"])) == 1
            fo.write(json.dumps({"image": cap["image"], "input_ids": ids, "source": c, "edit": "relation", "lf": inv}) + "\n")
            kept += 1
    print(f"{kept} of {n} relation captions have a false swap")


if __name__ == "__main__":
    main(*sys.argv[1:])
