"""Relation captions and their argument swaps, as uniter.pretrain ITM data (the relation stages of scripts/train-shapes.sh).

    python3 -m uniter.diagnostics.relation_itm --features DIR --split DIR --relations above[,below...] --out DIR

Writes OUT as a uniter.pretrain split: the true relation captions of --features (uniter extract's
captions.jsonl) whose relation word is one of --relations and whose two descriptions each name
exactly one object of the scene (--split's annotations.jsonl), as captions.jsonl; each one's
argument swap ("a star above a circle" → "a circle above a star") as its false caption
(false_captions.jsonl, `source` the true one). With unique referents a relation that holds one
way (beyond the generator's margin) cannot hold the other way, so every swap is false; the word
stays the same, so only the positions tell the two apart. regions.npz, vocab.txt and extract.json
are linked from --features. With --all, every caption and minimal edit of --features is kept
and the swaps are added to them (a caption's text negative is then drawn among all its edits),
and truth.npz is linked too when --features has one.
"""
from __future__ import annotations

import argparse
import json
import os

from .common import matches
from .relation_swaps import CONVERSE, relation_true

RELATION_PHRASES = {"above": "above", "below": "below", "left_of": "left of", "right_of": "right of"}


def color_swapped(text: str, rel: str, ca: str, cb: str) -> str:
    """The caption with the colour words of its two noun phrases exchanged (shapes.ProbeEdits'
    color_swap), the article before a changed colour word agreeing with it."""
    head, _, tail = text.partition(f" {RELATION_PHRASES[rel]} ")
    out = []
    for phrase, old, new in ((head, ca, cb), (tail, cb, ca)):
        words = phrase.split()
        i = words.index(old)
        words[i] = new
        if i > 0 and words[i - 1] in ("a", "an"):
            words[i - 1] = "an" if new[0] in "aeiou" else "a"
        out.append(" ".join(words))
    return f"{out[0]} {RELATION_PHRASES[rel]} {out[1]}"


def swapped(text: str, rel: str) -> str:
    """The caption with its two noun phrases exchanged around the relation phrase."""
    head, sep, tail = text.partition(f" {RELATION_PHRASES[rel]} ")
    if not sep or not head or not tail:
        raise ValueError(f"{text!r} has no {RELATION_PHRASES[rel]!r} between two phrases")
    return f"{tail} {RELATION_PHRASES[rel]} {head}"


def _false(image: int, text: str, source: int, edit: str, lf: dict, ids: dict, features: str) -> dict:
    toks = text.lower().split()
    if any(t not in ids for t in toks):
        raise ValueError(f"{text!r}: a word outside {features}/vocab.txt")
    return {"image": image, "text": text, "source": source, "edit": edit, "lf": lf,
            "input_ids": [ids["[CLS]"], *(ids[t] for t in toks), ids["[SEP]"]]}


def build(features: str, split: str, relations, out: str, keep_all: bool = False,
          color_swaps: bool = False, word_swaps: bool = False) -> dict:
    vocab = [t.strip() for t in open(os.path.join(features, "vocab.txt"), encoding="utf-8")]
    ids = {t: i for i, t in enumerate(vocab) if t}
    with open(os.path.join(split, "annotations.jsonl"), encoding="utf-8") as f:
        scenes = [json.loads(line) for line in f if line.strip()]
    os.makedirs(out, exist_ok=True)
    # With every caption kept, in order, the truth matrix's rows still name these captions, so
    # ITM's image negatives stay checked against the logical forms (without it, any other image).
    linked = ("regions.npz", "vocab.txt", "extract.json") + (
        ("truth.npz",) if keep_all and os.path.exists(os.path.join(features, "truth.npz")) else ())
    for name in linked:
        dst = os.path.join(out, name)
        if not os.path.lexists(dst):
            os.symlink(os.path.abspath(os.path.join(features, name)), dst)
    true, false = [], []
    if keep_all:  # every caption and every minimal edit of the split, the swaps added
        with open(os.path.join(features, "false_captions.jsonl"), encoding="utf-8") as f:
            false = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(features, "captions.jsonl"), encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            lf = c.get("lf", {})
            if lf.get("op") != "relation" or lf.get("rel") not in relations:
                if keep_all:
                    true.append(c)
                continue
            objs = scenes[c["image"]]["objects"]
            ca, cb = lf["a"].get("color"), lf["b"].get("color")
            present = {o["color"] for o in objs}
            if word_swaps:  # shapes.ProbeEdits' relation_swap: the converse word
                edit = dict(lf, rel=CONVERSE[lf["rel"]])
                if not relation_true(edit, scenes[c["image"]]):
                    text = c["text"].replace(f" {RELATION_PHRASES[lf['rel']]} ", f" {RELATION_PHRASES[edit['rel']]} ", 1)
                    false.append(_false(c["image"], text, len(true), "relation_swap", edit, ids, features))
            if color_swaps and ca and cb and ca != cb and {ca, cb} <= present:
                edit = dict(lf, a=dict(lf["a"], color=cb), b=dict(lf["b"], color=ca))
                if not relation_true(edit, scenes[c["image"]]):
                    text = color_swapped(c["text"], lf["rel"], ca, cb)
                    false.append(_false(c["image"], text, len(true), "color_swap", edit, ids, features))
            if sum(matches(lf["a"], o) for o in objs) != 1 or sum(matches(lf["b"], o) for o in objs) != 1:
                if keep_all:
                    true.append(c)
                continue
            false.append(_false(c["image"], swapped(c["text"], lf["rel"]), len(true), "relation_args",
                                dict(lf, a=lf["b"], b=lf["a"]), ids, features))
            true.append(c)
    for name, recs in (("captions.jsonl", true), ("false_captions.jsonl", false)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
    return {"captions": len(true), "false_captions": len(false), "relations": sorted(relations), "out": out}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.diagnostics.relation_itm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True, help="uniter extract output (captions.jsonl, regions.npz)")
    ap.add_argument("--split", required=True, help="the split folder (annotations.jsonl)")
    ap.add_argument("--relations", required=True, help="comma-separated: above, below, left_of, right_of")
    ap.add_argument("--out", required=True)
    ap.add_argument("--word-swaps", action="store_true",
                    help="also the converse-word swap of each relation caption (above ↔ below, left of ↔ "
                         "right of), where it is false")
    ap.add_argument("--color-swaps", action="store_true",
                    help="also the colour swap of each relation caption whose two phrases name two "
                         "colours present in the scene, where it is false")
    ap.add_argument("--all", action="store_true",
                    help="keep every caption and minimal edit of --features, the swaps added beside them")
    args = ap.parse_args(argv)
    rels = set(args.relations.split(","))
    if unknown := rels - set(RELATION_PHRASES):
        ap.error(f"--relations: unknown {sorted(unknown)}")
    print(json.dumps(build(args.features, args.split, rels, args.out, args.all, args.color_swaps, args.word_swaps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
