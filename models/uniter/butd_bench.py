"""The bottom-up-attention detector in `make bench`, Python side: the converted bundle and the
PyTorch peer.

    python3 -m uniter.butd_bench export --out .cache/bench/butd
    python3 -m uniter.butd_bench torch --dir .cache/bench/butd --json OUT.json

(from the repository root with models/ on PYTHONPATH, as scripts/bench.sh runs them)

`export` writes, under OUT: port/ (the LXMERT demo port's files with random full-size weights:
pytorch_model.bin of uniter.butd.BUTDDetector.init_random(seed), a port-style config.yaml with
the port's test settings — 6,000 / 300 RPN top-n, shorter side 600, longer at most 1,000 — and
the 1,600 / 400 line vocabularies: uniter.butd_export's fixture pieces), bundle/ (a tiny random
UNITER encoder with 2,048-d features and the detector's 1,601 labels, into which
`convert-butd --into` adds the detector, exactly as a user converts the port's checkpoint) and
images/ (two synthetic photo-like JPEGs, quality 90: 640×480, which the detector reads at
800×600, and 480×800, read at 600×1000, the largest input the preprocessing gives). With
--split also bundle-split/: the same encoder with the same weights converted as a split detector
(`convert-butd --split`: backbone and heads graphs, proposals and RoI pooling in Go; for the
CUDA provider). bench.json
records its key (seed, sizes, the port config, the SHA-256 of the Python sources the graph is
made from); an OUT whose key matches is not exported again. About 480 MB; never commit it.

`torch` times BUTDDetector.forward (eval, no_grad: the graph's four outputs for every proposal,
what detector.onnx computes) on each image's preprocessed tensor (uniter.detector.preprocess
with the bundle's preprocess section, the Python twin of the Go preprocessing) after one warm-up
call, at least --seconds and --min-iters calls per image, and prints {"IMAGE": {"images_per_s",
"ms", "calls", "input": [W, H], "proposals"}, ...} as JSON on stdout (and to --json). The
threads and the OpenBLAS kernels are the encoder peer's (uniter.bench torch): --threads
(torch.set_num_threads), --openblas-threads (OPENBLAS_NUM_THREADS, set before torch loads),
--openblas-coretype auto|default|inherit|NAME with --blas-probe FILE, the products checked
against a float64 reference before timing; --meta records them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time

from . import bench

FORMAT = 1           # bump when what export writes changes
SEED = 7
POST_NMS_TOPK = 300  # the port's demo config (RPN.POST_NMS_TOPK_TEST)
IMAGES = [("640x480", 640, 480), ("480x800", 480, 800)]
SOURCES = ["butd.py", "butd_export.py", "detector_export.py", "detector.py", "export.py"]


def log(msg: str):
    print(f"[uniter.butd_bench] {msg}", file=sys.stderr, flush=True)


def image_file(name: str) -> str:
    return os.path.join("images", f"{name}.jpg")


SPLIT_BUNDLE = "bundle-split"


def export_key(seed: int, post_nms_topk: int, split: bool = False) -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    sources = {}
    for name in SOURCES + (["detector_split.py"] if split else []):
        with open(os.path.join(here, name), "rb") as f:
            sources[name] = hashlib.sha256(f.read()).hexdigest()
    key = {"format": FORMAT, "seed": seed, "post_nms_topk": post_nms_topk,
           "images": [list(i) for i in IMAGES], "sources": sources}
    if split:  # absent otherwise: keys of exports without the split twin stay what they were
        key["split"] = True
    return key


def cmd_export(args):
    import torch
    from .butd import BUTDConfig, BUTDDetector
    from .butd_export import (BACKGROUND, convert_butd, draw_fixture_image, fixture_vocab,
                              port_config_yaml)
    from .export import write_bundle
    from .fixtures.tiny_random import make_vocab
    from .model import UniterConfig, UniterForPretraining

    key = export_key(args.seed, args.post_nms_topk, args.split)
    meta_path = os.path.join(args.out, "bench.json")
    if os.path.exists(meta_path) and not args.force:
        with open(meta_path) as f:
            have = json.load(f).get("key")
            # An export with the split twin also serves a request without it.
            ok = [key] if args.split else [key, export_key(args.seed, args.post_nms_topk, True)]
            if have in ok:
                log(f"{args.out} is up to date; not exporting again")
                return
        log(f"{args.out} was made with another key (settings or sources changed); exporting again")
    torch.set_num_threads(args.threads)
    tmp = args.out.rstrip("/") + ".tmp"  # export beside, then rename: no half-written folder
    shutil.rmtree(tmp, ignore_errors=True)
    port, bundle, images = (os.path.join(tmp, d) for d in ("port", "bundle", "images"))
    for d in (port, images):
        os.makedirs(d)

    t0 = time.time()
    cfg = BUTDConfig(post_nms_topk_test=args.post_nms_topk)
    model = BUTDDetector(cfg).eval().init_random(args.seed)
    torch.save(model.state_dict(), os.path.join(port, "pytorch_model.bin"))
    del model
    with open(os.path.join(port, "config.yaml"), "w") as f:
        f.write(port_config_yaml(cfg, 600, 1000))
    objects = fixture_vocab(cfg.num_classes, "object", args.seed)
    for name, lines in (("objects_vocab.txt", objects),
                        ("attributes_vocab.txt", fixture_vocab(cfg.num_attrs, "attribute", args.seed))):
        with open(os.path.join(port, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    log(f"port files with random full-size weights in {time.time() - t0:.1f}s")

    vocab_path = os.path.join(tmp, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(make_vocab()) + "\n")
    labels = [BACKGROUND] + [o.split(",")[0].lower().strip() for o in objects]
    ucfg = UniterConfig(vocab_size=len(make_vocab()), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        img_dim=cfg.feature_dim, img_label_dim=len(labels))
    write_bundle(UniterForPretraining(ucfg).init_weights(args.seed).eval(), bundle,
                 name="butd-bench", vocab_path=vocab_path, region_labels=labels, lowercase=True,
                 max_text_length=32, random_weights=True, graphs=["encoder"],
                 description="Tiny random UNITER encoder carrying the converted bottom-up-attention "
                             "detector (random full-size weights): a detector benchmark only.",
                 provenance={"created_by": "python3 -m uniter.butd_bench export", "seed": args.seed})
    os.remove(vocab_path)
    if args.split:  # the encoder alone, before the single-graph detector goes into bundle/
        shutil.copytree(bundle, os.path.join(tmp, SPLIT_BUNDLE))
    t0 = time.time()
    convert_butd(os.path.join(port, "pytorch_model.bin"), os.path.join(port, "config.yaml"),
                 os.path.join(port, "objects_vocab.txt"), os.path.join(port, "attributes_vocab.txt"),
                 into=bundle, log=log)
    log(f"converted into {bundle} in {time.time() - t0:.1f}s")
    if args.split:
        t0 = time.time()
        split = os.path.join(tmp, SPLIT_BUNDLE)
        convert_butd(os.path.join(port, "pytorch_model.bin"), os.path.join(port, "config.yaml"),
                     os.path.join(port, "objects_vocab.txt"),
                     os.path.join(port, "attributes_vocab.txt"), into=split, split=True, log=log)
        log(f"converted into {split} as a split detector in {time.time() - t0:.1f}s")
    for i, (name, w, h) in enumerate(IMAGES):
        draw_fixture_image(w, h, args.seed * 100 + i).save(os.path.join(tmp, image_file(name)),
                                                           quality=90)
    with open(os.path.join(tmp, "bench.json"), "w") as f:
        json.dump({"key": key}, f, indent=2)
        f.write("\n")
    shutil.rmtree(args.out, ignore_errors=True)
    os.rename(tmp, args.out)
    log(f"wrote {args.out}")


def cmd_torch(args):
    import torch
    from .butd import BUTDConfig, BUTDDetector, load_port_weights
    from .butd_export import read_config_yaml
    from .detector import load_rgb, preprocess

    torch.set_num_threads(args.threads)
    port = os.path.join(args.dir, "port")
    cfg, _ = BUTDConfig.from_port_config(read_config_yaml(os.path.join(port, "config.yaml")))
    model = BUTDDetector(cfg).eval()
    load_port_weights(model, os.path.join(port, "pytorch_model.bin"))
    with open(os.path.join(args.dir, "bundle", "manifest.json")) as f:
        pre = json.load(f)["detector"]["preprocess"]
    blas = bench.torch_blas_state(args, torch)
    log(f"torch {torch.__version__}: {torch.get_num_threads()} torch threads, OpenBLAS core "
        f"{blas['core']} with {blas['openblas_threads']} threads; the weights of {port}")
    results = {}
    with torch.no_grad():
        for name, _, _ in IMAGES:
            x, _, wr, hr = preprocess(load_rgb(os.path.join(args.dir, image_file(name))), pre)
            proposals = model(x)[0].shape[0]  # warm-up: first-call allocations, thread pools
            n, start = 0, time.perf_counter()
            while True:
                model(x)
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= args.seconds and n >= args.min_iters:
                    break
            results[name] = {"images_per_s": n / elapsed, "ms": 1000 * elapsed / n, "calls": n,
                             "input": [wr, hr], "proposals": proposals}
            log(f"{name} → {wr}x{hr}: {n} calls in {elapsed:.1f}s, {n / elapsed:.3f} images/s "
                f"({1000 * elapsed / n:.0f} ms), {proposals} proposals")
    bench.write_torch_results(args, torch, results, blas)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.butd_bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="convert random full-size port weights into a bundle (cached)")
    ex.add_argument("--out", default=".cache/bench/butd")
    ex.add_argument("--seed", type=int, default=SEED)
    ex.add_argument("--post-nms-topk", type=int, default=POST_NMS_TOPK,
                    help="RPN.POST_NMS_TOPK_TEST of the config (default: the port's 300)")
    ex.add_argument("--force", action="store_true", help="export even if OUT is up to date")
    ex.add_argument("--split", action="store_true",
                    help="also write OUT/bundle-split: the same weights as a split detector")
    ex.add_argument("--threads", type=int, default=2, help="torch threads for the export")
    tb = sub.add_parser("torch", help="time BUTDDetector.forward on the same weights and images")
    tb.add_argument("--dir", default=".cache/bench/butd", help="what export wrote")
    tb.add_argument("--seconds", type=float, default=0.0, help="timed seconds per image, at least")
    tb.add_argument("--min-iters", type=int, default=2, help="timed calls per image, at least")
    tb.add_argument("--threads", type=int, default=bench.DEFAULT_THREADS, help="torch.set_num_threads")
    tb.add_argument("--openblas-threads", type=int, default=bench.DEFAULT_OPENBLAS_THREADS,
                    help="OPENBLAS_NUM_THREADS (0: leave the environment alone)")
    tb.add_argument("--openblas-coretype", metavar="auto|default|inherit|NAME", default="auto",
                    help="OpenBLAS kernels, as `python3 -m uniter.bench torch` (default auto)")
    tb.add_argument("--blas-probe", metavar="FILE",
                    help="auto: reuse the probe saved here when it matches, else probe and save")
    tb.add_argument("--json", help="also write the result here")
    tb.add_argument("--meta", help="write the settings used (threads, torch version, BLAS) here")
    args = ap.parse_args(argv)
    if args.cmd == "torch":
        if args.openblas_threads > 0:
            os.environ["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)  # read when torch loads
        args.device = "cpu"
        args.probe_summary = bench.resolve_coretype(args)  # OPENBLAS_CORETYPE, before torch loads
        cmd_torch(args)
    else:
        cmd_export(args)


if __name__ == "__main__":
    main()
