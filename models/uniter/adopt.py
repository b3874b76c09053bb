"""Adopts a plan-stage run as the default model: the bundle of its MLM head re-fit, with the
provenance train-shapes.sh would record.

    python3 -m uniter.adopt --plan-stage RUNS/ft-RA60 --head-refit RUNS/head-RA60 \\
        --report-1k eval-test-1k.json --report-100 eval-test-100.json --out .cache/adopt

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
previous bundle's.
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
    section, labels, vocabulary and text settings; returns its manifest."""
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


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m uniter.adopt", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan-stage", required=True, metavar="RUN", help="the plan stage's run folder (final.json)")
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
                    help="what the plan stage started from, for the record (default: the previous default "
                         "recovered from its bundle, named by its encoder.onnx sha256)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    previous = _load(args.previous)
    started = args.started_from or (
        "the default bundle before the plan stage (encoder.onnx sha256 " + previous["graphs"]["encoder"]["sha256"] +
        "), recovered by python3 -m uniter.recover: the continued fine-tuning's encoder and ITM head bit for bit, "
        f"with the MLM head of its re-fit (head-cont-{args.run_name})")
    shutil.rmtree(args.out, ignore_errors=True)
    new = bundle_with_detector(os.path.join(args.head_refit, "final.pt"), args.out, args.detector_bundle)
    p = adopted_provenance(previous["provenance"], new["provenance"], _load(os.path.join(args.plan_stage, "final.json")),
                           _load(os.path.join(args.head_refit, "final.json")), args.work, args.run_name, started)
    reports = {}
    for split, path in (("test-1k", args.report_1k), ("test-100", args.report_100)):
        dst = os.path.join(args.out, f"eval-{args.run_name}-{split}.json")
        shutil.copyfile(path, dst)
        reports[split] = _load(dst)
    p["evaluation"] = evaluation_summary(reports)
    new["provenance"] = p
    new["name"], new["description"] = previous["name"], previous["description"]
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(new, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}: plan stage {json.dumps(p['plan_stage'])[:300]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
