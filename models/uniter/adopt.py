"""Adopts a plan-stage run, or the relation stages' runs, as the default model: the bundle of
their MLM head re-fit, with the provenance train-shapes.sh would record.

    python3 -m uniter.adopt --plan-stage RUNS/ft-RA60 --head-refit RUNS/head-RA60 \\
        --report-1k eval-test-1k.json --report-100 eval-test-100.json --out .cache/adopt
    python3 -m uniter.adopt --relation-stages above=RUNS/c1,above,below=RUNS/c2 --matching RUNS/m \\
        --head-refit RUNS/head-m --report-1k ... --report-100 ... --out .cache/adopt

(from the repository root with models/ on PYTHONPATH; then copy OUT over bundles/shapes-uniter).
For a plan stage run outside train-shapes.sh, from the default model recovered from its bundle
(python3 -m uniter.recover: the encoder and ITM head bit for bit those of train-shapes.sh's
continued fine-tuning, the MLM head its re-fit), and then its MLM head re-fit, as train-shapes.sh
runs them (PLAN_STEPS, HEAD_STEPS). The detector's training checkpoint is not in git, so the
bundle takes --detector-bundle's detector graph, labels and vocabulary as they are.

The manifest's provenance is --previous's (the default bundle the plan stage started from: data,
detector, pre-training, size stage, fine-tuning, continued fine-tuning, its MLM head re-fit), with
that re-fit kept as mlm_head_refit_before_plan, plus the plan stage and its re-fit (their
final.json, with the init paths train-shapes.sh would have given them under --work and
--run-name), and the evaluation reports' headline numbers; the reports are copied beside the
graphs as eval-NAME-test-1k.json and eval-NAME-test-100.json. Name and description stay the
previous bundle's unless --description is given.

With --relation-stages, the same for train-shapes.sh's relation stages (RELATION_STAGES, REL_STEPS)
run from the default model recovered from its bundle (which becomes the base model): the
provenance is --previous's with relation_stages added (each curriculum run with its relation
words, the matching stage, the re-fit; init paths as train-shapes.sh names them).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Optional

import torch

from .export import write_bundle
from .model import UniterConfig, UniterForPretraining, load_checkpoint
from .provenance import evaluation_summary, stage_record

DEFAULT_BUNDLE = "bundles/shapes-uniter"
DETECTOR_FILES = ("detector.onnx", "attribute_labels.txt")


def bundle_with_detector(checkpoint: str, out: str, detector_bundle: str, config: Optional[str] = None,
                         name: Optional[str] = None) -> dict:
    """A bundle in ``out`` of the checkpoint's encoder and heads (config: ``config``, else the
    checkpoint's folder's config.json) with ``detector_bundle``'s detector graph, detector
    section, labels, vocabulary and text section; returns its manifest."""
    with open(os.path.join(detector_bundle, "manifest.json")) as f:
        src = json.load(f)
    cfg = UniterConfig.from_json(config or os.path.join(os.path.dirname(checkpoint), "config.json"))
    model = UniterForPretraining(cfg)
    print(load_checkpoint(model, checkpoint, strict=True), file=sys.stderr)
    with open(os.path.join(detector_bundle, src["regions"]["labels"]), encoding="utf-8") as f:
        labels = f.read().split()
    write_bundle(model.eval(), out, name=name or src["name"],
                 vocab_path=os.path.join(detector_bundle, src["text"]["vocab"]), region_labels=labels,
                 lowercase=src["text"]["lowercase"], max_text_length=src["text"]["max_length"],
                 random_weights=False, provenance={"checkpoint": os.path.abspath(checkpoint)})
    with open(os.path.join(out, "manifest.json")) as f:
        m = json.load(f)
    m["graphs"]["detector"] = src["graphs"]["detector"]
    m["detector"] = src["detector"]
    m["text"] = src["text"]  # the same vocabulary: its domain and closed-vocabulary notes too
    for f in DETECTOR_FILES:
        shutil.copyfile(os.path.join(detector_bundle, f), os.path.join(out, f))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")
    return m


def adopted_provenance(previous: dict, exported: dict, plan_final: dict, head_final: dict, work: str,
                       run_name: str, started_from: str) -> dict:
    """The new bundle's provenance (without its evaluation): ``previous`` (the earlier default's
    provenance) with the plan stage and its MLM head re-fit recorded under train-shapes.sh's names
    (``work``/head-cont-NAME, plan-NAME, head-NAME), and ``exported``'s export details."""
    p = dict(previous)
    for k in ("evaluation", "encoder_graphs_reexported"):
        p.pop(k, None)
    if "plan_stage" not in p:  # the previous default had no plan stage: its re-fit came before it
        p["mlm_head_refit_before_plan"] = p.pop("mlm_head_refit", None)
    p["plan_stage"] = dict(stage_record(plan_final), init=f"{work}/head-cont-{run_name}/final.pt",
                           started_from=started_from)
    p["mlm_head_refit"] = dict(stage_record(head_final), init=f"{work}/plan-{run_name}/final.pt")
    p["checkpoint"] = os.path.abspath(f"{work}/head-{run_name}/final.pt")
    for k in ("exported", "torch_version", "opset"):
        if k in exported:
            p[k] = exported[k]
    return p


def relation_provenance(previous: dict, exported: dict, curriculum: list, matching_final: dict, head_final: dict,
                        work: str, run_name: str, started_from: str, images: int, matching_images: int) -> dict:
    """The new bundle's provenance (without its evaluation): ``previous`` (the base model's) with
    relation_stages recorded under train-shapes.sh's names (``work``/rel1-WORDS-NAME …, rel-NAME,
    head-rel-NAME); ``curriculum`` is [(words, final.json)] in order."""
    p = dict(previous)
    for k in ("evaluation", "encoder_graphs_reexported", "relation_stages"):
        p.pop(k, None)
    init, stages = f"{work}/head-{run_name}/final.pt", []
    for k, (words, final) in enumerate(curriculum, 1):
        stages.append(dict(stage_record(final), relations=words, init=init))
        init = f"{work}/rel{k}-{words}-{run_name}/final.pt"
    p["relation_stages"] = {
        "started_from": started_from,
        "data": {"curriculum": {"split": "train", "seed": 1, "images": images},
                 "matching": {"split": "train", "seed": 1, "images": matching_images, "truth": True},
                 "val": {"split": "val", "seed": 2}, "built_by": "python3 -m uniter.diagnostics.relation_itm"},
        "curriculum": stages,
        "matching": dict(stage_record(matching_final), init=init),
        "mlm_head_refit": dict(stage_record(head_final), init=f"{work}/rel-{run_name}/final.pt"),
    }
    p["checkpoint"] = os.path.abspath(f"{work}/head-rel-{run_name}/final.pt")
    for k in ("exported", "torch_version", "opset"):
        if k in exported:
            p[k] = exported[k]
    return p


def _curriculum(spec: str) -> list:
    """"above=RUN,above,below=RUN2" → [("above", RUN), ("above,below", RUN2)]: a word list runs up to
    the next '='-bearing item's start."""
    out, words = [], []
    for item in spec.split(","):
        if "=" in item:
            w, run = item.split("=", 1)
            out.append((",".join(words + [w]), run))
            words = []
        else:
            words.append(item)
    if words or not out:
        raise SystemExit(f"--relation-stages {spec!r}: each stage is WORDS=RUN")
    return out


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.adopt", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--plan-stage", metavar="RUN", help="the plan stage's run folder (final.json)")
    mode.add_argument("--relation-stages", metavar="WORDS=RUN,...",
                      help="the relation curriculum's run folders in order, each after its words "
                           "(above=RUN1,above,below=RUN2,...); with --matching")
    ap.add_argument("--matching", metavar="RUN", help="the relation stages' matching run (with --relation-stages)")
    ap.add_argument("--relation-images", type=int, default=30000,
                    help="train images the relation curriculum drew from (default %(default)s)")
    ap.add_argument("--matching-images", type=int, default=8000,
                    help="train images (with their truth matrix) the matching stage drew from (default %(default)s)")
    ap.add_argument("--head-refit", required=True, metavar="RUN",
                    help="its MLM head re-fit's run folder (final.pt, final.json, config.json): the model served")
    ap.add_argument("--report-1k", required=True, metavar="JSON", help="uniter eval report on test-1k of OUT")
    ap.add_argument("--report-100", required=True, metavar="JSON", help="uniter eval report on test-100 of OUT")
    ap.add_argument("--out", default=".cache/adopt", metavar="DIR", help="bundle folder to write (default %(default)s)")
    ap.add_argument("--previous", default=f"{DEFAULT_BUNDLE}/manifest.json", metavar="MANIFEST",
                    help="the manifest of the default the plan stage started from (default %(default)s; "
                         "an older one: git show REV:bundles/shapes-uniter/manifest.json > FILE)")
    ap.add_argument("--detector-bundle", default=DEFAULT_BUNDLE, metavar="DIR",
                    help="the bundle whose detector, labels and vocabulary the new one takes (default %(default)s)")
    ap.add_argument("--work", default=".cache/shapes-train", metavar="DIR",
                    help="train-shapes.sh's work folder, for the stage paths recorded (default %(default)s)")
    ap.add_argument("--run-name", default="wra", help="train-shapes.sh's model name (default %(default)s)")
    ap.add_argument("--started-from", metavar="TEXT",
                    help="what the plan stage (or the relation stages) started from, for the record (default: "
                         "the previous default recovered from its bundle, named by its encoder.onnx sha256)")
    ap.add_argument("--description", help="the new bundle's description (default: the previous one's)")
    args = ap.parse_args(argv)
    if bool(args.relation_stages) != bool(args.matching):
        ap.error("--relation-stages and --matching go together")
    torch.set_num_threads(1)
    previous = _load(args.previous)
    sha = previous["graphs"]["encoder"]["sha256"]
    shutil.rmtree(args.out, ignore_errors=True)
    new = bundle_with_detector(os.path.join(args.head_refit, "final.pt"), args.out, args.detector_bundle)
    head = _load(os.path.join(args.head_refit, "final.json"))
    if args.relation_stages:
        started = args.started_from or (
            f"the default bundle before the relation stages (encoder.onnx sha256 {sha}), recovered by python3 -m "
            f"uniter.recover: the base model (head-{args.run_name}) bit for bit")
        curriculum = [(w, _load(os.path.join(run, "final.json"))) for w, run in _curriculum(args.relation_stages)]
        p = relation_provenance(previous["provenance"], new["provenance"], curriculum,
                                _load(os.path.join(args.matching, "final.json")), head, args.work, args.run_name,
                                started, args.relation_images, args.matching_images)
    else:
        started = args.started_from or (
            f"the default bundle before the plan stage (encoder.onnx sha256 {sha}), recovered by python3 -m uniter.recover: "
            "the continued fine-tuning's encoder and ITM head bit for bit, "
            f"with the MLM head of its re-fit (head-cont-{args.run_name})")
        p = adopted_provenance(previous["provenance"], new["provenance"], _load(os.path.join(args.plan_stage, "final.json")),
                               head, args.work, args.run_name, started)
    reports = {}
    for split, path in (("test-1k", args.report_1k), ("test-100", args.report_100)):
        dst = os.path.join(args.out, f"eval-{args.run_name}-{split}.json")
        shutil.copyfile(path, dst)
        reports[split] = _load(dst)
    p["evaluation"] = evaluation_summary(reports)
    new["provenance"] = p
    new["name"], new["description"] = previous["name"], args.description or previous["description"]
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(new, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}: {json.dumps(p.get('relation_stages') or p['plan_stage'])[:300]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
