"""Encoder benchmark, Python side: the UNITER-base-sized random bundle and the PyTorch reference.

    python3 -m uniter.bench export --out .cache/bench/uniter-base-random
    python3 -m uniter.bench torch --bundle .cache/bench/uniter-base-random
    python3 -m uniter.bench blas-probe --json .cache/bench/blas-probe.json
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
Float32 means float32: on CUDA TF32 is turned off, as the Go side runs by default. `--autocast`
runs it under torch.autocast instead (float16 on CUDA, PyTorch's usual fp16 inference; bfloat16
on the CPU, the only dtype of its CPU autocast) and first records how far the ITM logits move
from float32's on each batch.
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

Kernels: OpenBLAS picks its kernels (the core type) when it loads, from CPUID or from
OPENBLAS_CORETYPE. `blas-probe` runs OpenBLAS's own choice and every core type the CPU's
/proc/cpuinfo flags allow, each in a fresh process: the float32 products at the encoder's shapes
against a float64 reference (GEMM_TOL), then one GEMM's GFLOP/s; a crash (SIGILL), a wrong
product or a core type OpenBLAS does not honour excludes a candidate, and the fastest correct one
is chosen. `torch --openblas-coretype auto` (the default on the CPU) probes, or reuses the probe
saved by --blas-probe FILE, and sets OPENBLAS_CORETYPE before torch loads; NAME, default
(OpenBLAS's own choice) and inherit (the environment's) skip the probe. Whichever it is, `torch`
checks that OpenBLAS runs the chosen core type and that its products match the float64 reference
before timing, and records the core type, the threads and the probe in --meta.
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


# ---------------------------------------------------------------------------------------------
# OpenBLAS core type: which kernels PyTorch's matrix products run on.
#
# Debian's torch does its float32 GEMMs in OpenBLAS (BLAS_INFO=generic: libblas.so.3 →
# libopenblas.so.0), a DYNAMIC_ARCH build that picks its kernels ("core type") when it loads,
# from CPUID, unless OPENBLAS_CORETYPE names one. A peer stuck on older kernels than the CPU
# runs is not a fair peer, so `torch --openblas-coretype auto` probes every core type the CPU's
# flags allow, each in a fresh process (the variable is read once, when the library loads):
# the products at the encoder's shapes against a float64 reference, then one GEMM's GFLOP/s;
# it keeps the fastest correct one. A core type whose instructions the CPU lacks dies of
# SIGILL or computes garbage: the flag filter skips those, and a crash or a wrong result in a
# probe excludes the candidate anyway.

PROBE_FORMAT = 1  # bump when the probe's checks or key change (invalidates --blas-probe files)

# The /proc/cpuinfo flags each core type's kernels need (SSE3 is "pni" there). The kernel
# clears a flag whose register state the OS does not enable, so these are what may run.
AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")
CORETYPE_FLAGS = {
    "Prescott": ("sse2", "pni"),
    "Core2": ("sse2", "pni", "ssse3"),
    "Nehalem": ("sse2", "pni", "ssse3", "sse4_1", "sse4_2"),
    "Sandybridge": ("sse4_2", "avx"),
    "Bulldozer": ("avx", "fma4", "xop"),  # AMD before Zen: FMA4 kernels
    "Piledriver": ("avx", "fma", "fma4", "xop"),
    "Steamroller": ("avx", "fma", "fma4", "xop"),
    "Excavator": ("avx2", "fma", "fma4", "xop"),
    "Haswell": ("avx", "avx2", "fma"),
    "Zen": ("avx", "avx2", "fma"),
    "SkylakeX": ("avx2", "fma") + AVX512,
    "Cooperlake": ("avx2", "fma") + AVX512 + ("avx512_bf16",),
    # Newer than Debian 12's OpenBLAS 0.3.21 (it falls back to its own choice for a name it
    # does not know: the probe reports such a candidate as not honoured).
    "SapphireRapids": ("avx2", "fma") + AVX512 + ("avx512_bf16", "avx512_fp16", "amx_bf16",
                                                   "amx_tile"),
}
DEFAULT_CORE = "default"   # OpenBLAS's own choice: OPENBLAS_CORETYPE removed
INHERIT_CORE = "inherit"   # the environment as it is (what the bench did before the probe)

# Float32 GEMM tolerance, as the relative Frobenius error ‖C − R‖ / ‖R‖ against the float64
# product R of the same float32 inputs. float32's unit roundoff is u = 2⁻²⁴ ≈ 6e-8; with
# inputs of random sign the rounding errors of a length-k dot product add up like a random
# walk, about u·√(k/2) relative for plain sequential summation: 2.4e-6 at k = 3072, the longest
# contraction of the encoder (the kernels here measure 2-6e-7). 1e-5 leaves 4× headroom
# over that, while anything wrong is far above it: one entry of 1792 × 3072 off by its size is
# ≈ 4e-4, an edge tile or a column left out 1e-2 or more, bf16 arithmetic (u = 2⁻⁸) ≈ 1e-3.
GEMM_TOL = 1e-5
# The float64 reference is itself computed by OpenBLAS (its double-precision kernels, not the
# single-precision ones under test). It is checked without any BLAS: against Freivalds' test
# (R·x against A·(B·x), with numpy's element-wise products and pairwise sums; float64 rounding
# ≈ 1e-16·√k) on the big products and against exactly rounded sums (math.fsum) on a small one.
REF_TOL = 1e-10
SEQ = TEXT_LEN + REGIONS  # 56 positions per pair
HEADS, HEAD_DIM, HIDDEN, INTERMEDIATE, IMG_DIM = 12, 64, 768, 3072, 2048


def cpuinfo_text() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_flags(text: str | None = None) -> set:
    """The first processor's flags in /proc/cpuinfo (empty when unknown)."""
    text = cpuinfo_text() if text is None else text
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model(text: str | None = None) -> str:
    text = cpuinfo_text() if text is None else text
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def coretype_candidates(flags: set, names=None) -> tuple:
    """The core types whose kernels the CPU's flags allow, in CORETYPE_FLAGS order, and the
    others as [(name, [missing flags])]. Unknown flags (an empty set: no /proc/cpuinfo) allow
    nothing: only OpenBLAS's own choice is probed then."""
    allowed, skipped = [], []
    for name in (names or CORETYPE_FLAGS):
        need = CORETYPE_FLAGS.get(name)
        if need is None:
            skipped.append((name, ["(not a core type this probe knows)"]))
            continue
        missing = [f for f in need if f not in flags]
        (skipped.append((name, missing)) if missing else allowed.append(name))
    return allowed, skipped


def coretype_env(name: str, env=None) -> dict:
    """The environment that makes OpenBLAS load with core type `name` (or default/inherit)."""
    env = dict(os.environ if env is None else env)
    if name == DEFAULT_CORE:
        env.pop("OPENBLAS_CORETYPE", None)
    elif name != INHERIT_CORE:
        env["OPENBLAS_CORETYPE"] = name
    return env


def apply_coretype(name: str):
    """Makes this process's OpenBLAS load with core type `name`: call before importing torch."""
    env = coretype_env(name)
    if "OPENBLAS_CORETYPE" in env:
        os.environ["OPENBLAS_CORETYPE"] = env["OPENBLAS_CORETYPE"]
    else:
        os.environ.pop("OPENBLAS_CORETYPE", None)


def openblas_state() -> dict:
    """The OpenBLAS this process has loaded (torch's, once torch is imported): its file, the
    core type it runs, its build config and thread count; {} when none is loaded."""
    import ctypes
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if "libopenblas" in os.path.basename(p) and p not in paths:
                    paths.append(p)
    except OSError:
        pass
    if not paths:
        return {}
    try:
        lib = ctypes.CDLL(paths[0])  # already loaded: the same handle, not a second copy
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        return {"library": paths[0] if len(paths) == 1 else paths,
                "core": lib.openblas_get_corename().decode(),
                "config": lib.openblas_get_config().decode(),
                "threads": int(lib.openblas_get_num_threads())}
    except (OSError, AttributeError) as e:
        return {"library": paths, "error": str(e)}


def torch_blas_info(torch) -> str:
    import re
    m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return m[1] if m else "unknown"


def gemm_cases(batch: int = 32) -> list:
    """(label, op, shapes) of float32 products the encoder runs at `batch` pairs of 56
    positions, plus odd sizes (edge tiles, k = 7, a single row). op: linear (x·Wᵀ + b, as
    nn.Linear: the weight transposed), matmul, or attn (q·kᵀ, k a transposed view)."""
    n = batch * SEQ
    return [
        (f"FFN in: linear [{n}, {HIDDEN}]·[{INTERMEDIATE}, {HIDDEN}]ᵀ", "linear",
         ((n, HIDDEN), (INTERMEDIATE, HIDDEN))),
        (f"FFN out: linear [{n}, {INTERMEDIATE}]·[{HIDDEN}, {INTERMEDIATE}]ᵀ", "linear",
         ((n, INTERMEDIATE), (HIDDEN, INTERMEDIATE))),
        (f"QKV/output: linear [{n}, {HIDDEN}]·[{HIDDEN}, {HIDDEN}]ᵀ", "linear",
         ((n, HIDDEN), (HIDDEN, HIDDEN))),
        (f"regions: linear [{batch * REGIONS}, {IMG_DIM}]·[{HIDDEN}, {IMG_DIM}]ᵀ", "linear",
         ((batch * REGIONS, IMG_DIM), (HIDDEN, IMG_DIM))),
        (f"attention scores: [{batch}, {HEADS}, {SEQ}, {HEAD_DIM}]·kᵀ", "attn",
         ((batch, HEADS, SEQ, HEAD_DIM), (batch, HEADS, SEQ, HEAD_DIM))),
        (f"attention context: [{batch}, {HEADS}, {SEQ}, {SEQ}]·[…, {SEQ}, {HEAD_DIM}]", "matmul",
         ((batch, HEADS, SEQ, SEQ), (batch, HEADS, SEQ, HEAD_DIM))),
        ("pooler, one row: linear [1, 768]·[768, 768]ᵀ", "linear", ((1, HIDDEN), (HIDDEN, HIDDEN))),
        ("box positions, k = 7: linear [36, 7]·[768, 7]ᵀ", "linear", ((REGIONS, 7), (HIDDEN, 7))),
        ("odd: matmul [77, 129]·[129, 35]", "matmul", ((77, 129), (129, 35))),
        ("odd: matmul [31, 1001]·[1001, 17]", "matmul", ((31, 1001), (1001, 17))),
    ]


def torch_product(op: str, a, b, bias=None):
    """The float32 product under test, as the encoder computes it."""
    import torch
    import torch.nn.functional as F
    if op == "linear":
        return F.linear(a, b, bias)
    if op == "attn":
        return torch.matmul(a, b.transpose(-1, -2))
    return torch.matmul(a, b)


def _as_gemm(op: str, a, b):
    """float64 numpy operands (A, B) with the product A @ B, bias aside."""
    import numpy as np
    a64, b64 = a.double().numpy(), b.double().numpy()
    if op in ("linear", "attn"):
        b64 = np.ascontiguousarray(np.swapaxes(b64, -1, -2))
    return a64, b64


def rel_frobenius(got, ref) -> float:
    """‖got − ref‖_F / ‖ref‖_F in float64; inf when got has a NaN or an infinity."""
    import numpy as np
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape or not np.isfinite(got).all():
        return float("inf")
    return float(np.linalg.norm((got - ref).ravel()) / max(np.linalg.norm(ref.ravel()), 1e-300))


def freivalds_error(a64, b64, ref64, rng, vectors: int = 2) -> float:
    """How far ref64 is from a64 @ b64, by Freivalds' test without BLAS: R·x against A·(B·x)
    for random x, each product an element-wise multiply and a sum (numpy's own loops), as
    ‖Rx − A(Bx)‖ / ‖A(Bx)‖ (for Gaussian x its square's mean is ‖R − AB‖²_F / ‖AB‖²_F)."""
    import numpy as np
    worst = 0.0
    for _ in range(vectors):
        x = rng.standard_normal(b64.shape[-1])
        bx = (b64 * x).sum(-1)                      # [..., k]
        abx = (a64 * bx[..., None, :]).sum(-1)      # [..., m]
        rx = (ref64 * x).sum(-1)                    # [..., m]
        worst = max(worst, rel_frobenius(rx, abx))
    return worst


def exact_product(a, b) -> list:
    """a @ b for small float32 matrices, each entry math.fsum of the float64 products: float32
    × float32 is exact in float64 and fsum rounds the sum once, so this is the exactly rounded
    result, with no BLAS and no kernel at all."""
    import math
    a, b = a.double().tolist(), b.double().tolist()
    return [[math.fsum(a[i][t] * b[t][j] for t in range(len(b))) for j in range(len(b[0]))]
            for i in range(len(a))]


def check_gemms(batch: int = 32, seed: int = 0, product=None) -> list:
    """Each gemm_cases product in float32 (product(op, a, b, bias): the kernels under test,
    torch_product by default) against its float64 reference; the reference checked without
    BLAS. Returns [{case, err, ref_err, ok}]; one more case compares a small product and the
    float64 BLAS with exactly rounded sums."""
    import numpy as np
    import torch
    product = product or torch_product
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = []
    for label, op, (sa, sb) in gemm_cases(batch):
        a, b = torch.randn(sa, generator=gen), torch.randn(sb, generator=gen)
        bias = torch.randn(sb[0], generator=gen) if op == "linear" else None
        with torch.no_grad():
            got = product(op, a, b, bias).numpy()
        a64, b64 = _as_gemm(op, a, b)
        ref = a64 @ b64  # float64: OpenBLAS's dgemm, checked below without BLAS
        ref_err = freivalds_error(a64, b64, ref, rng)
        if bias is not None:
            ref = ref + bias.double().numpy()
        err = rel_frobenius(got, ref)
        out.append({"case": label, "err": err, "ref_err": ref_err,
                    "ok": err <= GEMM_TOL and ref_err <= REF_TOL})
    # A small product against exactly rounded sums: checks the float32 kernel and the float64
    # reference with no BLAS in the loop at all.
    a, b = torch.randn(5, 300, generator=gen), torch.randn(300, 7, generator=gen)
    exact = np.array(exact_product(a, b))
    with torch.no_grad():
        got = product("matmul", a, b).numpy()
    ref_err = rel_frobenius(a.double().numpy() @ b.double().numpy(), exact)
    err = rel_frobenius(got, exact)
    out.append({"case": "small: matmul [5, 300]·[300, 7] against exact sums", "err": err,
                "ref_err": ref_err, "ok": err <= GEMM_TOL and ref_err <= REF_TOL})
    return out


def time_gemm(batch: int = 32, repeats: int = 5) -> float:
    """GFLOP/s of the FFN-in product (linear [batch·56, 768]·[3072, 768]ᵀ + bias), the best of
    `repeats` calls after one warm-up call."""
    import torch
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch * SEQ, HIDDEN, generator=gen)
    w = torch.randn(INTERMEDIATE, HIDDEN, generator=gen)
    bias = torch.randn(INTERMEDIATE, generator=gen)
    flop = 2.0 * batch * SEQ * HIDDEN * INTERMEDIATE
    best = float("inf")
    with torch.no_grad():
        F.linear(x, w, bias)
        for _ in range(repeats):
            t0 = time.perf_counter()
            F.linear(x, w, bias)
            best = min(best, time.perf_counter() - t0)
    return flop / best / 1e9


def probe_here(requested: str, batch: int = 32, repeats: int = 5, threads: int = 1) -> dict:
    """One candidate, in this process (its environment already chosen): the core OpenBLAS
    runs, the correctness of the products, the GFLOP/s. What a probe subprocess prints."""
    import torch
    torch.set_num_threads(threads)
    t0 = time.time()
    state = openblas_state()
    checks = check_gemms(batch)
    ok = all(c["ok"] for c in checks)
    res = {"requested": requested, "core": state.get("core"), "openblas": state,
           "torch_blas": torch_blas_info(torch), "torch_threads": torch.get_num_threads(),
           "openblas_threads": state.get("threads"),
           "env_coretype": os.environ.get("OPENBLAS_CORETYPE"),
           "max_err": max(c["err"] for c in checks),
           "max_ref_err": max(c["ref_err"] for c in checks), "checks": checks,
           "correct": ok}
    # Time only correct kernels: a wrong one's speed means nothing.
    res["gflops"] = time_gemm(batch, repeats) if ok else None
    res["seconds"] = round(time.time() - t0, 2)
    return res


PROBE_MARK = "BLAS-PROBE "


def probe_command(name: str, batch: int, repeats: int, threads: int) -> list:
    # --openblas-threads 0: OPENBLAS_NUM_THREADS comes from the parent's environment.
    return [sys.executable, "-m", "uniter.bench", "blas-probe", "--one", name,
            "--batch", str(batch), "--repeats", str(repeats), "--threads", str(threads),
            "--openblas-threads", "0"]


def probe_candidate(name: str, batch: int = 32, repeats: int = 5, threads: int = 1,
                    timeout: float = 300, command=None, env=None) -> dict:
    """Probes core type `name` (or default/inherit) in a fresh process and returns its verdict:
    ok (correct; GFLOP/s measured), wrong (a product off the reference), crashed (a signal such
    as SIGILL, an error exit, no result), timeout, or not-honoured (OpenBLAS ran another core
    type than the one asked for: a name it does not know). `command` replaces the probe
    command (tests)."""
    import signal
    import subprocess
    env = coretype_env(name, env)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                    else "")
    cmd = command or probe_command(name, batch, repeats, threads)
    base = {"name": name, "core": None, "gflops": None}
    t0 = time.time()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**base, "verdict": "timeout", "reason": f"no result in {timeout:.0f}s"}
    tail = " | ".join(p.stderr.strip().splitlines()[-2:])
    if p.returncode < 0:
        try:
            sig = signal.Signals(-p.returncode).name
        except ValueError:
            sig = f"signal {-p.returncode}"
        return {**base, "verdict": "crashed", "reason": f"killed by {sig}" +
                (f" ({tail})" if tail else "")}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(PROBE_MARK)]
    if p.returncode != 0 or not lines:
        return {**base, "verdict": "crashed",
                "reason": f"exit status {p.returncode}, no result" + (f" ({tail})" if tail else "")}
    res = json.loads(lines[-1][len(PROBE_MARK):])
    out = {**base, "core": res.get("core"), "gflops": res.get("gflops"),
           "max_err": res.get("max_err"), "max_ref_err": res.get("max_ref_err"),
           "torch_threads": res.get("torch_threads"),
           "openblas_threads": res.get("openblas_threads"), "torch_blas": res.get("torch_blas"),
           "openblas_config": (res.get("openblas") or {}).get("config"),
           "seconds": round(time.time() - t0, 1)}
    if name not in (DEFAULT_CORE, INHERIT_CORE) and (res.get("core") or "").lower() != name.lower():
        return {**out, "gflops": None, "verdict": "not-honoured",
                "reason": f"OpenBLAS ran {res.get('core')} instead"}
    if not res.get("correct"):
        bad = [c for c in res.get("checks", []) if not c["ok"]]
        return {**out, "gflops": None, "verdict": "wrong",
                "reason": "; ".join(f"{c['case']}: error {c['err']:.2e} (reference "
                                    f"{c['ref_err']:.1e})" for c in bad[:3])}
    return {**out, "verdict": "ok", "reason": ""}


def pick_coretype(results: list):
    """The fastest candidate whose products were correct, or None. Never one with another
    verdict, whatever its speed."""
    ok = [r for r in results if r.get("verdict") == "ok" and r.get("gflops")]
    return max(ok, key=lambda r: r["gflops"]) if ok else None


def probe_key(threads: int, openblas_threads) -> dict:
    """What a saved probe (--blas-probe FILE) must match to be reused."""
    return {"format": PROBE_FORMAT, "cpu": cpu_model(), "flags": sorted(cpu_flags()),
            "python": sys.executable, "torch_threads": threads,
            "openblas_threads": str(openblas_threads),
            "inherited_coretype": os.environ.get("OPENBLAS_CORETYPE")}


def probe_all(threads: int = 1, batch: int = 32, repeats: int = 5, names=None,
              ignore_flags: bool = False, timeout: float = 300) -> dict:
    """Probes OpenBLAS's own choice and every core type the CPU's flags allow, each in a fresh
    process, and picks the fastest correct one. The summary goes into --meta."""
    flags = cpu_flags()
    if ignore_flags:
        allowed, skipped = list(names or CORETYPE_FLAGS), []
    else:
        allowed, skipped = coretype_candidates(flags, names)
    log(f"OpenBLAS core types: probing {DEFAULT_CORE} (OpenBLAS's own choice) and "
        f"{', '.join(allowed) or 'no other'}; skipped for missing CPU flags: "
        + (", ".join(f"{n} ({' '.join(m)})" for n, m in skipped) or "none"))
    results = []
    for name in [DEFAULT_CORE] + allowed:
        r = probe_candidate(name, batch, repeats, threads, timeout)
        results.append(r)
        speed = f"{r['gflops']:.1f} GFLOP/s" if r.get("gflops") else "-"
        err = f", max error {r['max_err']:.1e}" if r.get("max_err") is not None else ""
        log(f"  {name:15s} core {r.get('core') or '?':12s} {r['verdict']:12s} {speed}{err}"
            + (f": {r['reason']}" if r.get("reason") else ""))
        if name == DEFAULT_CORE and r["verdict"] == "ok" and not r.get("core"):
            log("  no OpenBLAS in torch's process: nothing to choose, OpenBLAS's default stands")
            break
    best = pick_coretype(results)
    default = results[0]
    summary = {"key": probe_key(threads, os.environ.get("OPENBLAS_NUM_THREADS", "unset")),
               "cpu": cpu_model(), "batch": batch, "gemm_tol": GEMM_TOL,
               "timed_gemm": f"linear [{batch * SEQ}, {HIDDEN}]·[{INTERMEDIATE}, {HIDDEN}]ᵀ "
                             f"float32, best of {repeats}",
               "inherited_coretype": os.environ.get("OPENBLAS_CORETYPE"),
               "default_core": default.get("core"),
               "openblas_config": default.get("openblas_config"),
               "candidates": results,
               "skipped": [{"name": n, "missing_flags": m} for n, m in skipped],
               "chosen": best["name"] if best else None,
               "chosen_core": best["core"] if best else None}
    if best:
        log(f"fastest correct: {best['name']} ({best['core']}, {best['gflops']:.1f} GFLOP/s)")
    else:
        log("no candidate computed correct products")
    return summary


def cmd_blas_probe(args):
    if args.one:  # a probe subprocess: this process's OpenBLAS, as its environment made it
        res = probe_here(args.one, args.batch, args.repeats, args.threads)
        print(PROBE_MARK + json.dumps(res), flush=True)
        return
    summary = probe_all(args.threads, args.batch, args.repeats, args.coretypes,
                        args.ignore_flags, args.timeout)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if not summary["chosen"]:
        sys.exit("blas-probe: no OpenBLAS core type computed correct products")


def resolve_coretype(args) -> dict | None:
    """Sets OPENBLAS_CORETYPE for `torch` before torch loads, as --openblas-coretype says;
    returns the probe summary for auto (from --blas-probe FILE when its key matches)."""
    want = args.openblas_coretype
    if want is None:
        want = "auto" if args.device == "cpu" else INHERIT_CORE
        args.openblas_coretype = want
    if want != "auto":
        apply_coretype(want)
        return None
    summary = None
    key = probe_key(args.threads, os.environ.get("OPENBLAS_NUM_THREADS", "unset"))
    if args.blas_probe and os.path.exists(args.blas_probe):
        with open(args.blas_probe) as f:
            saved = json.load(f)
        if saved.get("key") == key and saved.get("chosen"):
            summary = saved
            log(f"OpenBLAS core type from {args.blas_probe}: {saved['chosen']} "
                f"({saved['chosen_core']})")
        else:
            log(f"{args.blas_probe} was probed with other settings; probing again")
    if summary is None:
        summary = probe_all(args.threads)
        if args.blas_probe:
            with open(args.blas_probe, "w") as f:
                json.dump(summary, f, indent=2)
                f.write("\n")
    if not summary["chosen"]:
        sys.exit("torch: no OpenBLAS core type computed correct products (see the log above); "
                 "--openblas-coretype NAME|default|inherit runs one anyway")
    apply_coretype(summary["chosen"])
    return summary


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


def torch_blas_state(args, torch) -> dict:
    """The BLAS the timed run uses, checked before timing: the core type OpenBLAS loaded with
    must be the one chosen, and (on the CPU) the products at the encoder's shapes must match the
    float64 reference. Exits otherwise. Returns what --meta records."""
    state = openblas_state()
    probe = getattr(args, "probe_summary", None)
    want = args.openblas_coretype
    expect = (probe["chosen_core"] if probe else
              None if want in (DEFAULT_CORE, INHERIT_CORE) else want)
    if expect and not state:
        sys.exit(f"torch: --openblas-coretype {want} asks for OpenBLAS's {expect} kernels, but "
                 "torch has no OpenBLAS loaded here")
    if expect and (state.get("core") or "").lower() != expect.lower():
        sys.exit(f"torch: OpenBLAS runs core type {state.get('core')}, not the {expect} chosen "
                 f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')})")
    blas = {"torch_blas": torch_blas_info(torch), "coretype_option": want,
            "core": state.get("core"), "openblas_config": state.get("config"),
            "openblas_threads": state.get("threads"), "torch_threads": torch.get_num_threads(),
            "env_coretype": os.environ.get("OPENBLAS_CORETYPE")}
    if args.device == "cpu":
        t0 = time.time()
        checks = check_gemms(32)
        blas["max_err"] = max(c["err"] for c in checks)
        blas["gemm_tol"] = GEMM_TOL
        bad = [c for c in checks if not c["ok"]]
        if bad:
            sys.exit("torch: float32 products off the float64 reference with OpenBLAS core "
                     f"{state.get('core')}: " + "; ".join(
                         f"{c['case']}: {c['err']:.2e} (reference {c['ref_err']:.1e})"
                         for c in bad))
        log(f"products at the encoder's shapes match the float64 reference (max relative "
            f"error {blas['max_err']:.1e} ≤ {GEMM_TOL:g}) in {time.time() - t0:.1f}s")
    if probe:
        blas["probe"] = {k: v for k, v in probe.items() if k != "key"}
    return blas


def autocast_dtype(device_type: str):
    """The reduced precision `torch --autocast` runs in: float16 on CUDA (what fp16 inference
    there means), bfloat16 on the CPU (the only one torch's CPU autocast has)."""
    import torch
    return torch.float16 if device_type == "cuda" else torch.bfloat16


def forward_context(device, autocast: bool):
    """no_grad, and with `autocast` torch.autocast in autocast_dtype(device)."""
    import contextlib
    import torch
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    if autocast:
        stack.enter_context(torch.autocast(device.type, dtype=autocast_dtype(device.type)))
    return stack


def time_calls(call, sync, batch: int, seconds: float, min_iters: int) -> tuple:
    """Calls `call` (then `sync`) until `seconds` have passed and `min_iters` calls were made;
    returns (calls, elapsed seconds, pairs/s)."""
    n, start = 0, time.perf_counter()
    while True:
        call()
        sync()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= min_iters:
            return n, elapsed, n * batch / elapsed


def autocast_deviation(graph, inputs, device) -> float:
    """The largest difference of the ITM logits computed under autocast from float32's, on
    `inputs`: what reduced precision does to this model's scores. Exits on a non-finite one."""
    import torch
    with forward_context(device, False):
        ref = graph(*inputs)[1].float()
    with forward_context(device, True):
        got = graph(*inputs)[1].float()
    if not torch.isfinite(got).all():
        sys.exit("torch --autocast: non-finite ITM logits in reduced precision")
    return float((got - ref).abs().max())


def cmd_torch(args):
    import torch
    from .export import EncoderGraph

    device = torch.device(args.device)
    if args.autocast and device.type == "cpu" and int(torch.__version__.split(".")[0]) < 2:
        sys.exit(f"torch --autocast on the CPU needs torch 2 or later: {torch.__version__}'s CPU "
                 "autocast leaves LayerNorm's weights in float32 beside bfloat16 inputs and fails")
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
    if device.type == "cuda":
        # float32 means float32: TF32 off (PyTorch's default for matrix products since 1.12,
        # not for convolutions), as the Go side runs it by default (ort.cuda_use_tf32).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    graph = EncoderGraph(model, False).eval().to(device)  # what encoder.onnx computes
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    blas = torch_blas_state(args, torch)
    precision = f"autocast {str(autocast_dtype(device.type)).removeprefix('torch.')}" \
        if args.autocast else "float32"
    log(f"torch {torch.__version__}: {torch.get_num_threads()} torch threads, OpenBLAS core "
        f"{blas['core']} with {blas['openblas_threads']} threads, {precision} on {device}; "
        f"same weights as {args.bundle}")

    gen = torch.Generator().manual_seed(0)
    results, runs, deviation = {}, {}, {}
    for batch in args.batches:
        inputs = [t.to(device) for t in bench_inputs(cfg, batch, gen)]
        if args.autocast:
            deviation[str(batch)] = autocast_deviation(graph, inputs, device)
            log(f"batch {batch}: ITM logits within {deviation[str(batch)]:.2e} of float32's")
        with forward_context(device, args.autocast):
            graph(*inputs)  # warm-up: first-call allocations and thread pool start
            sync()
            runs[str(batch)] = []
            for r in range(args.repeats):
                n, elapsed, rate = time_calls(lambda: graph(*inputs), sync, batch, args.seconds,
                                              args.min_iters)
                runs[str(batch)].append(rate)
                log(f"batch {batch} run {r + 1}/{args.repeats}: {n} calls in {elapsed:.1f}s, "
                    f"{rate:.2f} pairs/s ({1000 * elapsed / (n * batch):.1f} ms/pair)")
        # The best run: on a shared machine, other jobs only ever slow a run down.
        results[str(batch)] = max(runs[str(batch)])
    extra = {"precision": precision, "device": str(device)}
    if device.type == "cuda":
        extra["gpu"] = torch.cuda.get_device_name(device)
        extra["tf32"] = False
    if args.autocast:
        extra["itm_logit_deviation_from_float32"] = deviation
    write_torch_results(args, torch, results, blas, seconds_per_run=args.seconds,
                        runs_pairs_per_s=runs, **extra)


def write_torch_results(args, torch, results: dict, blas: dict, **meta):
    """Prints a PyTorch peer's results as JSON, writes them to --json, and its settings (torch
    version, thread counts, the OpenBLAS state, meta) to --meta."""
    out = json.dumps(results)
    print(out)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out + "\n")
    if args.meta:
        with open(args.meta, "w") as f:
            json.dump({"torch_version": torch.__version__, "torch_threads": args.threads,
                       "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
                       **meta, "blas": blas}, f)
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
    tb.add_argument("--autocast", action="store_true",
                    help="run under torch.autocast: float16 on CUDA, bfloat16 on the CPU (the "
                         "ITM logits' largest difference from float32's is logged and recorded)")
    tb.add_argument("--json", help="also write the result here")
    tb.add_argument("--meta", help="write the settings used (threads, torch version, BLAS) here")
    tb.add_argument("--openblas-coretype", metavar="auto|default|inherit|NAME",
                    help="OpenBLAS kernels for the matrix products: auto (default on the CPU) "
                         "probes the core types the CPU allows and takes the fastest correct "
                         "one; default: OpenBLAS's own choice (OPENBLAS_CORETYPE removed); "
                         "inherit: the environment's (default with --device cuda); NAME: that "
                         "core type (e.g. Haswell, SkylakeX, Cooperlake). The products are "
                         "checked against a float64 reference before timing, whichever it is")
    tb.add_argument("--blas-probe", metavar="FILE",
                    help="auto: reuse the probe saved here when it was made with the same CPU "
                         "and threads, else probe and save it here")
    bp = sub.add_parser("blas-probe", help="probe OpenBLAS core types for PyTorch: correctness "
                                           "against float64, GFLOP/s; pick the fastest correct")
    bp.add_argument("--coretypes", nargs="+", metavar="NAME",
                    help="probe only these (default: every core type the CPU's flags allow)")
    bp.add_argument("--ignore-flags", action="store_true",
                    help="probe --coretypes even when the CPU lacks their instructions (a "
                         "crash or a wrong result then excludes them)")
    bp.add_argument("--batch", type=int, default=32,
                    help="pairs of 56 positions in the checked and timed products (default 32)")
    bp.add_argument("--repeats", type=int, default=5, help="timed calls; the best counts")
    bp.add_argument("--timeout", type=float, default=300, help="seconds per candidate, at most")
    bp.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch.set_num_threads")
    bp.add_argument("--openblas-threads", type=int, default=DEFAULT_OPENBLAS_THREADS,
                    help="OPENBLAS_NUM_THREADS (0: leave the environment alone)")
    bp.add_argument("--json", help="also write the summary here")
    bp.add_argument("--one", metavar="NAME", help=argparse.SUPPRESS)  # a probe subprocess
    args = ap.parse_args()

    if args.cmd in ("torch", "blas-probe") and getattr(args, "openblas_threads", 0) > 0:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)  # read when torch loads
    if args.cmd == "blas-probe" and args.one:
        apply_coretype(args.one)  # as the parent set it; also when run by hand
    if args.cmd == "torch":
        args.probe_summary = resolve_coretype(args)  # OPENBLAS_CORETYPE, before torch loads
    {"export": cmd_export, "export-tasks": cmd_export_tasks, "torch": cmd_torch,
     "blas-probe": cmd_blas_probe}[args.cmd](args)


if __name__ == "__main__":
    main()
