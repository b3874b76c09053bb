"""Encoder benchmark, Python side: the UNITER-base-sized random bundle and the PyTorch reference.

    python3 -m uniter.bench export --out .cache/bench/uniter-base-random
    python3 -m uniter.bench torch --bundle .cache/bench/uniter-base-random
    python3 -m uniter.bench export-tasks --out .cache/bench/tasks

(from the repository root with models/ on PYTHONPATH, as scripts/bench.sh runs it)

`export` writes a bundle with random weights and the official UNITER-base shape (hidden 768, 12
layers, 12 heads, intermediate 3072, vocab 28996, 2048-d region features, 1601 region labels)
plus bench.json, which records the config, the seed and a fingerprint of the weights (ITM logits
on fixed inputs). It then adds the project's Faster R-CNN detector (uniter/detector.py) at its
default DetectorConfig size, with the encoder's dimensions: D = 2048 features, C = 1601 classes
(the bundle's region_labels.txt: __background__ + 1600 synthetic names), A = 401 attributes
(__no_attribute__ + 400 synthetic names), random weights (Detector.init_weights(seed)),
bottom-up-attention preprocessing (BGR, Caffe means, shorter side 600, longer side at most 1000,
bilinear) and selection (NMS IoU 0.3, confidence 0.2, 10 to 100 boxes); write_detector exports
detector.onnx and the manifest's detector section. Each part is cached on its own: the encoder
is exported again only when bench.json's "key" changes, the detector only when its
"detector_key" does (a detector change does not cost an encoder export). The weights come from
UniterForPretraining.init_weights(seed), so `torch` rebuilds exactly the same model from the
seed and checks the fingerprint before timing anything.

`torch` times PyTorch eager (eval, no_grad) on the module the exporter turns into encoder.onnx
(backbone + ITM head, uniter/export.py EncoderGraph) on batches of 20 tokens + 36
regions after one warm-up call, keeps the best of --repeats runs (other jobs on a shared machine
only slow a run down), and prints {"batch": pairs_per_s, ...} as JSON on stdout (and to --json).
Progress goes to stderr. The bundle is a benchmark artefact: never commit it; its scores mean
nothing.

`export-tasks` writes one bundle per official fine-tuned class at the same size (base_config),
for the Go benchmark of each task head's added cost (pipeline/bench_test.go BenchmarkTaskHeads):
OUT/LAYOUT for LAYOUT in vqa (3,129 answers, as the official VQA answer list; synthetic answer
names), ve, re (linear re_output, the official mlp=1), retrieval, nlvr2-paired, nlvr2-triplet,
nlvr2-paired-attn. Each goes the way a real fine-tuned checkpoint goes: a random-weight model
(TaskModel.init_weights(seed), the official BERT init) saved as a flat state dict in the official
key layout, with the official config format (no img_dim / img_label_dim) and, for VQA, an
ans2label.json, then uniter.export.export_checkpoint (strict key check, class read from the
keys). Only the graphs the benchmark runs are written: encoder (and nlvr2 for NLVR2), not
encoder_attention (export_checkpoint has no graph choice; its default_graphs is narrowed for the
call). The checkpoint and source files are deleted after the export. Each graph holds the whole
model (about 420 MB; NLVR2 bundles have two), so the seven bundles take about 4.2 GB and about
6 minutes to export on 2 cores. Each bundle's bench.json records its key (format, seed, layout,
config, answers, graphs); a bundle whose key matches is not exported again.

Threads: --threads is torch.set_num_threads (element-wise ops, softmax, LayerNorm); Debian's
torch does its matrix products in OpenBLAS, whose pool is --openblas-threads (set before torch
is imported). Measured on the 2-core dev machine: see DEFAULT_THREADS below.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

BENCH_FORMAT = 1  # bump when the encoder part's contents change, to invalidate cached exports
TASKS_FORMAT = 1  # the same for export-tasks' bundles
DETECTOR_FORMAT = 1  # the same for the detector part (detector_key in bench.json)

# Fastest inference setting on the 2-core dev machine (AMD EPYC, Debian torch 1.13.1 with
# OpenBLAS), swept with `torch --threads T --openblas-threads B`, pairs/s at batch 1/8/32, on a
# machine shared with other jobs (so ±20%):
#   T=1 B=2: 6.8-8.0 / 10.2-12.2 / 7.1-12.0   <- fastest: OpenBLAS does the matrix products
#   T=1 B=1: 4.9-5.2 /  6.9-7.3  / 6.3-7.2
#   T=2 B=1: 5.1-5.3 /  3.5-7.3  / 6.6-7.2
#   T=2 B=2: 0.5-1.0 /  2.8-5.8  / 1.3-7.5    <- two pools of 2 on 2 cores fight
DEFAULT_THREADS = 1
DEFAULT_OPENBLAS_THREADS = 2

TEXT_LEN = 20  # tokens, [CLS] and [SEP] included: the Go benchmark's texts have exactly 20
REGIONS = 36   # bottom-up-attention's usual 36 boxes per image


def log(msg: str):
    print(f"[uniter.bench] {msg}", file=sys.stderr, flush=True)


def base_config():
    from .model import UniterConfig
    return UniterConfig(vocab_size=28996, hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072,
                        max_position_embeddings=512, img_dim=2048, img_label_dim=1601)


def synthetic_vocab(size: int) -> list:
    """BERT specials first, then the fixture's real words and pieces, then [unusedN] filler."""
    from .fixtures.tiny_random import make_vocab
    vocab = make_vocab()  # [PAD] [UNK] [CLS] [SEP] [MASK], words, ##pieces, characters
    vocab += [f"[unused{i}]" for i in range(size - len(vocab))]
    assert len(vocab) == size and len(set(vocab)) == size
    return vocab


def region_labels(n: int) -> list:
    from .fixtures.tiny_random import REGION_LABELS
    return REGION_LABELS + [f"vg_class_{i}" for i in range(len(REGION_LABELS), n)]


def build_model(cfg, seed: int):
    from .model import UniterForPretraining
    return UniterForPretraining(cfg).init_weights(seed).eval()


def fingerprint(model) -> list:
    """ITM logits on the exporter's fixed example inputs: identifies the weights."""
    import torch
    from .export import EncoderGraph, example_inputs
    with torch.no_grad():
        return EncoderGraph(model, False)(*example_inputs(model))[0].tolist()


def bench_key(cfg, seed: int) -> dict:
    """What the cached bundle must match to be reused."""
    return {"format": BENCH_FORMAT, "seed": seed, "config": cfg.to_dict(), "graphs": ["encoder"]}


def detector_config(cfg):
    """The project's detector at its default DetectorConfig size (backbone, anchors, RPN top-n,
    RoIAlign, box head), with the encoder's feature and label dimensions."""
    from .detector import DetectorConfig
    return DetectorConfig(num_classes=cfg.img_label_dim, num_attributes=DETECTOR_ATTRIBUTES,
                          feature_dim=cfg.img_dim)


DESCRIPTION = ("UNITER-base-sized encoder and default-size detector with random weights and a "
               "synthetic vocabulary, for throughput benchmarks only. Its scores and regions mean "
               "nothing.")
DETECTOR_ATTRIBUTES = 401  # Visual Genome's 400 attributes + __no_attribute__, as in BUTD


def attribute_labels(n: int) -> list:
    from .detector_export import NO_ATTRIBUTE
    return [NO_ATTRIBUTE] + [f"vg_attr_{i}" for i in range(1, n)]


def detector_key(cfg, seed: int) -> dict:
    """What the cached bundle's detector must match to be reused."""
    from .detector import BUTD_PREPROCESS, BUTD_SELECTION
    key = {"format": DETECTOR_FORMAT, "seed": seed, "config": detector_config(cfg).to_dict(),
           "preprocess": BUTD_PREPROCESS, "selection": BUTD_SELECTION}
    return json.loads(json.dumps(key))  # as bench.json reads back: tuples become lists


def export_detector(cfg, out: str, seed: int, meta: dict, meta_path: str):
    """Adds the detector to the encoder bundle in out (in place) and records detector_key."""
    from .detector import BUTD_PREPROCESS, BUTD_SELECTION, Detector
    from .detector_export import write_detector

    # Forget the old key first: an export that stops half-way is redone next time.
    meta.pop("detector_key", None)
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    dcfg = detector_config(cfg)
    t0 = time.time()
    model = Detector(dcfg).init_weights(seed).eval()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"built the default-size detector with random weights ({n_params / 1e6:.1f}M parameters, "
        f"C={dcfg.num_classes}, A={dcfg.num_attributes}, D={dcfg.feature_dim}); exporting "
        "detector.onnx...")
    with open(os.path.join(out, "region_labels.txt"), encoding="utf-8") as f:
        labels = f.read().splitlines()
    write_detector(model, out, preprocess=dict(BUTD_PREPROCESS), selection=dict(BUTD_SELECTION),
                   labels=labels, attributes=attribute_labels(dcfg.num_attributes))
    mpath = os.path.join(out, "manifest.json")
    with open(mpath) as f:
        manifest = json.load(f)
    manifest["description"] = DESCRIPTION
    manifest.setdefault("provenance", {})["detector"] = {
        "created_by": "python3 -m uniter.bench export", "seed": seed,
        "weights": "Detector.init_weights(seed)", "config": dcfg.to_dict()}
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    log(f"detector exported in {time.time() - t0:.1f}s")
    meta["detector_key"] = detector_key(cfg, seed)
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def cmd_export(args):
    import shutil
    import torch
    from .export import write_bundle

    cfg = base_config()
    key = bench_key(cfg, args.seed)
    meta_path = os.path.join(args.out, "bench.json")
    torch.set_num_threads(args.threads)
    if os.path.exists(meta_path) and not args.force:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("key") == key and os.path.exists(os.path.join(args.out, "encoder.onnx")):
            if (meta.get("detector_key") == detector_key(cfg, args.seed)
                    and os.path.exists(os.path.join(args.out, "detector.onnx"))):
                log(f"{args.out} is up to date (seed {args.seed}); not exporting again")
            else:
                log(f"{args.out}: encoder up to date, detector missing or made with another "
                    "config")
                export_detector(cfg, args.out, args.seed, meta, meta_path)
            return
        log(f"{args.out} was made with another config; exporting again")

    t0 = time.time()
    model = build_model(cfg, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"built UNITER-base-sized model with random weights ({n_params / 1e6:.1f}M parameters) "
        f"in {time.time() - t0:.1f}s")

    tmp = args.out.rstrip("/") + ".tmp"  # export beside, then rename: no half-written bundle
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    vocab_path = os.path.join(tmp, "vocab.source.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(synthetic_vocab(cfg.vocab_size)) + "\n")
    t0 = time.time()
    log("exporting encoder.onnx (10-60 s on 2 cores)...")
    write_bundle(model, tmp, name="uniter-base-random", vocab_path=vocab_path,
                 region_labels=region_labels(cfg.img_label_dim), lowercase=False,
                 max_text_length=60, random_weights=True, graphs=["encoder"],
                 description=DESCRIPTION,
                 provenance={"created_by": "python3 -m uniter.bench export", "seed": args.seed,
                             "weights": "UniterForPretraining.init_weights(seed)"})
    os.remove(vocab_path)
    log(f"exported in {time.time() - t0:.1f}s")
    meta = {"key": key, "fingerprint_itm_logits": fingerprint(model)}
    export_detector(cfg, tmp, args.seed, meta, os.path.join(tmp, "bench.json"))
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(tmp, args.out)
    log(f"wrote {args.out}")


# export-tasks: the fine-tuned classes' layouts (the names uniter.fixtures.tiny_tasks uses),
# in the order they are exported and reported.
TASK_LAYOUTS = ["vqa", "ve", "re", "retrieval", "nlvr2-paired", "nlvr2-triplet",
                "nlvr2-paired-attn"]
VQA_ANSWERS = 3129  # the official VQA answer list (utils/ans2label.json)
RE_MLP = 1          # the official RE default: re_output = Linear(h, 1)
TASK_DESCRIPTION = ("UNITER-base-sized {cls} with random weights and a synthetic vocabulary, for "
                    "the task-head benchmark only. Its answers mean nothing.")


def task_graphs(layout: str) -> list:
    """The graphs BenchmarkTaskHeads needs: the NLVR2 graph (and the encoder every bundle has)."""
    return ["nlvr2", "encoder"] if layout.startswith("nlvr2") else ["encoder"]


def task_key(cfg, layout: str, seed: int) -> dict:
    """What a cached task bundle must match to be reused."""
    key = {"format": TASKS_FORMAT, "seed": seed, "layout": layout, "config": cfg.to_dict(),
           "graphs": task_graphs(layout)}
    if layout == "vqa":
        key["answers"] = VQA_ANSWERS
    if layout == "re":
        key["re_mlp"] = RE_MLP
    return json.loads(json.dumps(key))


def vqa_answers(n: int) -> list:
    """n distinct answer strings: the tiny fixture's (a few real ones, "" included, as the
    official list has it) then synthetic names."""
    from .fixtures.tiny_tasks import ANSWERS
    answers = ANSWERS + [f"vqa_answer_{i}" for i in range(len(ANSWERS), n)]
    assert len(answers) == n and len(set(answers)) == n
    return answers


def task_model(layout: str, cfg):
    from .tasks import (UniterForImageTextRetrieval, UniterForNlvr2Paired,
                        UniterForNlvr2PairedAttn, UniterForNlvr2Triplet,
                        UniterForReferringExpressionComprehension, UniterForVisualEntailment,
                        UniterForVisualQuestionAnswering)
    return {"retrieval": lambda: UniterForImageTextRetrieval(cfg),
            "vqa": lambda: UniterForVisualQuestionAnswering(cfg, VQA_ANSWERS),
            "ve": lambda: UniterForVisualEntailment(cfg),
            "nlvr2-paired": lambda: UniterForNlvr2Paired(cfg),
            "nlvr2-triplet": lambda: UniterForNlvr2Triplet(cfg),
            "nlvr2-paired-attn": lambda: UniterForNlvr2PairedAttn(cfg),
            "re": lambda: UniterForReferringExpressionComprehension(cfg, RE_MLP)}[layout]()


class _OnlyGraphs:
    """Narrows uniter.export.default_graphs, which export_checkpoint's write_bundle uses for its
    graph list, to `graphs` for the duration of a with block. mock.patch.object fails when the
    function is gone, rather than exporting every graph silently."""

    def __init__(self, graphs: list):
        self.graphs = graphs

    def __enter__(self):
        from unittest import mock
        from . import export
        orig = export.default_graphs
        want = self.graphs

        def narrowed(model, heads):
            return [g for g in orig(model, heads) if g in want]
        self.patch = mock.patch.object(export, "default_graphs", narrowed)
        self.patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self.patch.__exit__(*exc)


def export_task(layout: str, cfg, out: str, seed: int, src: dict, threads: int):
    """One task bundle into out (through out.tmp, then renamed): checkpoint → export_checkpoint."""
    import shutil
    import torch
    from .export import export_checkpoint

    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.time()
    model = task_model(layout, cfg).init_weights(seed).eval()
    cls = model.task_manifest()["class"]
    n_params = sum(p.numel() for p in model.parameters())
    ck = os.path.join(tmp, "checkpoint.pt")
    # Official ModelSaver: {k: v.cpu()} of model.state_dict(), a flat dict.
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, ck)
    del model
    log(f"{layout}: {cls} with random weights ({n_params / 1e6:.1f}M parameters) saved in the "
        f"official layout in {time.time() - t0:.1f}s; exporting {', '.join(task_graphs(layout))} "
        "through export_checkpoint...")
    t0 = time.time()
    with _OnlyGraphs(task_graphs(layout)):
        manifest, _, _ = export_checkpoint(
            ck, src["config"], src["vocab"], src["labels"], tmp, f"uniter-base-random-{layout}",
            answers=src["answers"] if layout == "vqa" else None, lowercase=False,
            max_text_length=60, strict=True, random_weights=True,
            description=TASK_DESCRIPTION.format(cls=cls),
            provenance={"created_by": "python3 -m uniter.bench export-tasks", "seed": seed,
                        "weights": f"{cls}.init_weights(seed)",
                        "checkpoint": "random weights in the official layout, deleted after "
                                      "the export",
                        "config": "base_config() in the official format"},
            verify=False, log=lambda msg: log(f"{layout}: {msg}"))
    os.remove(ck)
    got = sorted(manifest["graphs"])
    if got != sorted(task_graphs(layout)):
        log(f"{layout}: export_checkpoint wrote graphs {got} (the benchmark needs "
            f"{task_graphs(layout)}); keeping them")
    if manifest["task"]["class"] != cls:
        raise SystemExit(f"{layout}: export_checkpoint read the checkpoint as "
                         f"{manifest['task']['class']}, not {cls}")
    with open(os.path.join(tmp, "bench.json"), "w") as f:
        json.dump({"key": task_key(cfg, layout, seed)}, f, indent=2)
        f.write("\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    log(f"{layout}: exported in {time.time() - t0:.1f}s → {out}")


def task_bundle_ok(out: str, key: dict) -> bool:
    try:
        with open(os.path.join(out, "bench.json")) as f:
            meta = json.load(f)
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    return meta.get("key") == key and all(
        os.path.exists(os.path.join(out, g["file"])) for g in manifest["graphs"].values())


def cmd_export_tasks(args):
    import shutil
    import tempfile
    import torch
    from .fixtures.tiny_tasks import official_config

    cfg = base_config()
    torch.set_num_threads(args.threads)
    to_export = []
    for i, layout in enumerate(TASK_LAYOUTS):
        if layout not in args.layouts:
            continue
        seed = args.seed + i
        out = os.path.join(args.out, layout)
        if not args.force and task_bundle_ok(out, task_key(cfg, layout, seed)):
            log(f"{out} is up to date (seed {seed}); not exporting again")
        else:
            to_export.append((layout, seed, out))
    if not to_export:
        return
    os.makedirs(args.out, exist_ok=True)
    # The official inputs of `python3 -m uniter.export`, written once for every layout.
    srcdir = tempfile.mkdtemp(prefix=".src-", dir=args.out)
    try:
        src = {"vocab": os.path.join(srcdir, "vocab.txt"),
               "config": os.path.join(srcdir, "uniter-base.json"),
               "labels": os.path.join(srcdir, "region_labels.txt"),
               "answers": os.path.join(srcdir, "ans2label.json")}
        with open(src["vocab"], "w", encoding="utf-8") as f:
            f.write("\n".join(synthetic_vocab(cfg.vocab_size)) + "\n")
        with open(src["config"], "w") as f:
            json.dump(official_config(cfg), f, indent=2)
        with open(src["labels"], "w", encoding="utf-8") as f:
            f.write("\n".join(region_labels(cfg.img_label_dim)) + "\n")
        answers = vqa_answers(VQA_ANSWERS)
        with open(src["answers"], "w") as f:  # official format: {answer: index}
            json.dump({a: answers.index(a) for a in sorted(answers)}, f)
        for layout, seed, out in to_export:
            export_task(layout, cfg, out, seed, src, args.threads)
    finally:
        shutil.rmtree(srcdir, ignore_errors=True)


def bench_inputs(cfg, batch: int, gen):
    """A padded batch with every position real: 20 token ids, 36 regions with valid boxes."""
    import torch
    ids = torch.randint(5, cfg.vocab_size, (batch, TEXT_LEN), generator=gen)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    xy = torch.rand(batch, REGIONS, 2, generator=gen) * 0.7
    wh = 0.05 + torch.rand(batch, REGIONS, 2, generator=gen) * 0.25
    loc = torch.cat([xy, xy + wh, wh, wh[..., :1] * wh[..., 1:]], dim=-1)
    return (ids, torch.ones(batch, TEXT_LEN, dtype=torch.long),
            torch.randn(batch, REGIONS, cfg.img_dim, generator=gen).abs(), loc,
            torch.ones(batch, REGIONS, dtype=torch.long))


def cmd_torch(args):
    import torch
    from .export import EncoderGraph

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.bundle, "bench.json")) as f:
        meta = json.load(f)
    cfg = base_config()
    if meta["key"] != bench_key(cfg, meta["key"]["seed"]):
        sys.exit(f"{args.bundle}/bench.json does not match this script's config: export again")
    model = build_model(cfg, meta["key"]["seed"])
    got = torch.tensor(fingerprint(model))
    want = torch.tensor(meta["fingerprint_itm_logits"])
    if not torch.allclose(got, want, atol=1e-5):
        sys.exit(f"weights differ from the exported bundle's (ITM logits {got.tolist()} vs "
                 f"{want.tolist()}): export again")
    device = torch.device(args.device)
    graph = EncoderGraph(model, False).eval().to(device)  # what encoder.onnx computes
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    log(f"torch {torch.__version__}: {args.threads} torch threads, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; same weights as {args.bundle}")

    gen = torch.Generator().manual_seed(0)
    results, runs = {}, {}
    with torch.no_grad():
        for batch in args.batches:
            inputs = [t.to(device) for t in bench_inputs(cfg, batch, gen)]
            graph(*inputs)  # warm-up: first-call allocations and thread pool start
            sync()
            runs[str(batch)] = []
            for r in range(args.repeats):
                n, start = 0, time.perf_counter()
                while True:
                    graph(*inputs)
                    sync()
                    n += 1
                    elapsed = time.perf_counter() - start
                    if elapsed >= args.seconds and n >= args.min_iters:
                        break
                runs[str(batch)].append(n * batch / elapsed)
                log(f"batch {batch} run {r + 1}/{args.repeats}: {n} calls in {elapsed:.1f}s, "
                    f"{n * batch / elapsed:.2f} pairs/s "
                    f"({1000 * elapsed / (n * batch):.1f} ms/pair)")
            # The best run: on a shared machine, other jobs only ever slow a run down.
            results[str(batch)] = max(runs[str(batch)])
    out = json.dumps(results)
    print(out)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out + "\n")
    if args.meta:
        with open(args.meta, "w") as f:
            json.dump({"torch_version": torch.__version__, "torch_threads": args.threads,
                       "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
                       "seconds_per_run": args.seconds, "runs_pairs_per_s": runs}, f)
            f.write("\n")


def main():
    ap = argparse.ArgumentParser(prog="python3 -m uniter.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write the UNITER-base-sized random bundle with its "
                                       "detector (cached)")
    ex.add_argument("--out", default=".cache/bench/uniter-base-random", help="bundle folder")
    ex.add_argument("--seed", type=int, default=0, help="weight seed (init_weights)")
    ex.add_argument("--force", action="store_true", help="export even if the bundle is up to date")
    ex.add_argument("--threads", type=int, default=2, help="torch threads for the export")
    et = sub.add_parser("export-tasks", help="write a UNITER-base-sized random bundle per "
                                             "official fine-tuned class (cached)")
    et.add_argument("--out", default=".cache/bench/tasks",
                    help="folder of the bundles (OUT/LAYOUT)")
    et.add_argument("--seed", type=int, default=100, help="weight seed of the first layout "
                                                          "(the next ones: +1, +2, ...)")
    et.add_argument("--layouts", nargs="+", default=TASK_LAYOUTS, choices=TASK_LAYOUTS)
    et.add_argument("--force", action="store_true", help="export even if a bundle is up to date")
    et.add_argument("--threads", type=int, default=2, help="torch threads for the export")
    tb = sub.add_parser("torch", help="time PyTorch eager on the bundle's weights")
    tb.add_argument("--bundle", default=".cache/bench/uniter-base-random")
    tb.add_argument("--batches", default="1,8,32", type=lambda s: [int(x) for x in s.split(",")],
                    help="comma-separated batch sizes (default 1,8,32)")
    tb.add_argument("--seconds", type=float, default=2.0, help="timed seconds per run, at least")
    tb.add_argument("--min-iters", type=int, default=1, help="calls per run, at least")
    tb.add_argument("--repeats", type=int, default=3,
                    help="runs per batch size; the best counts (default 3)")
    tb.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch.set_num_threads")
    tb.add_argument("--openblas-threads", type=int, default=DEFAULT_OPENBLAS_THREADS,
                    help="OPENBLAS_NUM_THREADS (0: leave the environment alone)")
    tb.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    tb.add_argument("--json", help="also write the result here")
    tb.add_argument("--meta", help="write the settings used (threads, torch version) here")
    args = ap.parse_args()

    if args.cmd == "torch" and args.openblas_threads > 0:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)  # read when torch loads
    {"export": cmd_export, "export-tasks": cmd_export_tasks, "torch": cmd_torch}[args.cmd](args)


if __name__ == "__main__":
    main()
