"""Exports a UNITER checkpoint to ONNX and writes a model bundle.

A bundle is a folder the Go service loads without guessing anything:

    manifest.json           dims, graphs with their I/O names/dtypes/shapes, tokenizer, heads,
                            label file, provenance (everything the Go side must know)
    encoder.onnx            [text | regions] → itm_logits, pooled, hidden (+ rank_logits)
    encoder_attention.onnx  the same graph, also returning per-layer attention probabilities
    mlm_head.onnx           hidden states of text positions → vocabulary logits
    mrc_head.onnx           hidden states of region positions → detector-class logits
    vocab.txt               BERT WordPiece vocabulary
    region_labels.txt       one detector class name per line, background first

The encoder takes the padded layout: text padded to T, regions padded to N, with masks that are
1 on real positions. UNITER's own code packs each pair's text and regions with no gap between
them; the masks make the padded layout give the same outputs.

Command line (``python3 -m uniter.export --help``): an official-format checkpoint to a bundle.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import json
import os
import shutil
import sys
from typing import Dict, List, Optional

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .model import LOC_DIM, UniterConfig, UniterForPretraining, load_checkpoint

MANIFEST_FORMAT = 1
OPSET = 17


class EncoderGraph(nn.Module):
    def __init__(self, model: UniterForPretraining, with_attention: bool):
        super().__init__()
        self.m = model
        self.with_attention = with_attention

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        hidden, pooled, attn = self.m.uniter(input_ids, text_mask, img_feat, img_loc, img_mask)
        outs = [self.m.itm_output(pooled), pooled, hidden]
        if self.m.rank_output is not None:
            outs.append(self.m.rank_output(pooled))
        if self.with_attention:
            outs.append(torch.stack(attn, dim=1))  # [B, layers, heads, S, S]
        return tuple(outs)


class MLMHeadGraph(nn.Module):
    def __init__(self, model: UniterForPretraining):
        super().__init__()
        self.cls = model.cls

    def forward(self, hidden):
        return self.cls(hidden)


class MRCHeadGraph(nn.Module):
    def __init__(self, model: UniterForPretraining):
        super().__init__()
        self.region_classifier = model.region_classifier

    def forward(self, hidden):
        return self.region_classifier(hidden)


def _io(name: str, dtype: str, shape: List) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape}


def encoder_io(model: UniterForPretraining, with_attention: bool):
    c = model.config
    inputs = [
        _io("input_ids", "int64", ["batch", "text"]),
        _io("text_mask", "int64", ["batch", "text"]),
        _io("img_feat", "float32", ["batch", "regions", c.img_dim]),
        _io("img_loc", "float32", ["batch", "regions", LOC_DIM]),
        _io("img_mask", "int64", ["batch", "regions"]),
    ]
    outputs = [
        _io("itm_logits", "float32", ["batch", 2]),
        _io("pooled", "float32", ["batch", c.hidden_size]),
        _io("hidden", "float32", ["batch", "sequence", c.hidden_size]),
    ]
    if model.rank_output is not None:
        outputs.append(_io("rank_logits", "float32", ["batch", 1]))
    if with_attention:
        outputs.append(_io("attention", "float32", ["batch", c.num_hidden_layers,
                                                     c.num_attention_heads, "sequence", "sequence"]))
    return inputs, outputs


def _dynamic_axes(ios: List[dict]) -> Dict[str, Dict[int, str]]:
    return {io["name"]: {i: d for i, d in enumerate(io["shape"]) if isinstance(d, str)}
            for io in ios}


# torch >= 2.5 can export through dynamo; the graphs here are made (and tested) with the
# TorchScript tracer, so ask for it explicitly where the choice exists.
TRACER = ({"dynamo": False}
          if "dynamo" in inspect.signature(torch.onnx.export).parameters else {})


def _export(module: nn.Module, args, inputs, outputs, path: str):
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, args, path, opset_version=OPSET,
                          input_names=[i["name"] for i in inputs],
                          output_names=[o["name"] for o in outputs],
                          dynamic_axes=_dynamic_axes(inputs + outputs),
                          do_constant_folding=True, **TRACER)
    onnx.save(_static_reshapes(onnx.load(path)), path)


def _static_reshapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Gives every Reshape a constant target shape, using ONNX's 0 (copy the input's dim) and -1
    (infer one dim), where the tracer computed it from tensor shapes (Shape → Gather → Concat), and
    drops the shape nodes left unused. ONNX Runtime's CUDA provider runs such shape nodes on the
    CPU, and strict placement (ort.cuda_strict_placement) refuses a graph that has any.

    A part of the target, dim k of tensor S at position i, becomes 0 only when ONNX shape inference
    proves it equal to dim i of the Reshape's input (the same symbol), a number when it is static,
    and -1 when it is the only part left; otherwise the Reshape is kept as traced. Shape inference
    runs again after each round of rewrites, so a rewritten Reshape's output keeps its input's
    symbols (the heads' merge is provable once their split is rewritten). What inference proved
    before a round stays true after it: every rewrite keeps the graph's values."""
    while True:
        inferred = onnx.shape_inference.infer_shapes(model)
        g = inferred.graph
        dims = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            if vi.type.tensor_type.HasField("shape"):
                dims[vi.name] = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                                 for d in vi.type.tensor_type.shape.dim]
        producer = {o: n for n in model.graph.node for o in n.output}

        def const(name):
            n = producer.get(name)
            if n is None or n.op_type != "Constant":
                return None
            return numpy_helper.to_array(n.attribute[0].t)

        def part(name):
            """One element of the target: ("const", v) or ("dim", S, k), else None."""
            c = const(name)
            if c is not None and c.size == 1:
                return ("const", int(c.reshape(-1)[0]))
            u = producer.get(name)
            if u is None or u.op_type != "Unsqueeze":
                return None
            ga = producer.get(u.input[0])
            if ga is None or ga.op_type != "Gather" or const(ga.input[1]) is None:
                return None
            sh = producer.get(ga.input[0])
            if sh is None or sh.op_type != "Shape" or len(sh.attribute):
                return None
            return ("dim", sh.input[0], int(const(ga.input[1]).reshape(())))

        rewrites = []
        for node in model.graph.node:
            if node.op_type != "Reshape" or const(node.input[1]) is not None:
                continue
            cat = producer.get(node.input[1])
            if cat is None or cat.op_type != "Concat":
                continue
            parts = [part(i) for i in cat.input]
            if any(p is None for p in parts) or any(p == ("const", 0) for p in parts):
                continue
            data = dims.get(node.input[0], [])
            target = []
            for i, p in enumerate(parts):
                if p[0] == "const":
                    target.append(p[1])
                    continue
                sdims = dims.get(p[1], [])
                d = sdims[p[2]] if p[2] < len(sdims) else None
                if isinstance(d, int) and d > 0:
                    target.append(d)
                elif d is not None and i < len(data) and data[i] == d:
                    target.append(0)
                else:
                    target.append(-1)
            if target.count(-1) <= 1:
                rewrites.append((node, target))
        if not rewrites:
            return model
        for node, target in rewrites:
            name = node.output[0] + "_static_shape"
            model.graph.node.insert(0, onnx.helper.make_node(
                "Constant", [], [name], value=numpy_helper.from_array(np.array(target, dtype=np.int64), name)))
            node.input[1] = name
        _drop_unused(model)


def _drop_unused(model: onnx.ModelProto):
    """Removes nodes none of whose outputs is read by another node or is a graph output."""
    while True:
        used = {o.name for o in model.graph.output} | {i for n in model.graph.node for i in n.input}
        dead = [n for n in model.graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            model.graph.node.remove(n)


def example_inputs(model: UniterForPretraining, batch=2, text=5, regions=3):
    c = model.config
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, c.vocab_size, (batch, text), generator=g)
    return (ids, torch.ones(batch, text, dtype=torch.long),
            torch.randn(batch, regions, c.img_dim, generator=g),
            torch.rand(batch, regions, LOC_DIM, generator=g),
            torch.ones(batch, regions, dtype=torch.long))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bundle(model: UniterForPretraining, out_dir: str, *, name: str, vocab_path: str,
                 region_labels: List[str], lowercase: bool, max_text_length: int,
                 random_weights: bool, provenance: dict, description: str = "",
                 graphs: Optional[List[str]] = None) -> dict:
    """Exports the graphs and writes manifest.json; returns the manifest."""
    c = model.config
    if len(region_labels) != c.img_label_dim:
        raise ValueError(f"{len(region_labels)} region labels for img_label_dim {c.img_label_dim}")
    with open(vocab_path, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    if vocab_size != c.vocab_size:
        raise ValueError(f"vocab has {vocab_size} tokens, config says {c.vocab_size}")
    if max_text_length > c.max_position_embeddings:
        raise ValueError("max_text_length exceeds max_position_embeddings")
    graphs = graphs or ["encoder", "encoder_attention", "mlm_head", "mrc_head"]
    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    ex = example_inputs(model)
    manifest_graphs = {}
    for g in graphs:
        path = os.path.join(out_dir, f"{g}.onnx")
        if g in ("encoder", "encoder_attention"):
            ins, outs = encoder_io(model, g == "encoder_attention")
            _export(EncoderGraph(model, g == "encoder_attention"), ex, ins, outs, path)
        elif g == "mlm_head":
            ins = [_io("hidden", "float32", ["batch", "text", c.hidden_size])]
            outs = [_io("mlm_logits", "float32", ["batch", "text", c.vocab_size])]
            _export(MLMHeadGraph(model), (torch.randn(2, 5, c.hidden_size),), ins, outs, path)
        elif g == "mrc_head":
            ins = [_io("hidden", "float32", ["batch", "regions", c.hidden_size])]
            outs = [_io("mrc_logits", "float32", ["batch", "regions", c.img_label_dim])]
            _export(MRCHeadGraph(model), (torch.randn(2, 3, c.hidden_size),), ins, outs, path)
        else:
            raise ValueError(f"unknown graph {g!r}")
        manifest_graphs[g] = {"file": f"{g}.onnx", "sha256": _sha256(path),
                              "inputs": ins, "outputs": outs}
    shutil.copyfile(vocab_path, os.path.join(out_dir, "vocab.txt"))
    with open(os.path.join(out_dir, "region_labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(region_labels) + "\n")
    manifest = {
        "format_version": MANIFEST_FORMAT,
        "name": name,
        "description": description,
        "random_weights": random_weights,
        "model": {
            "architecture": "uniter",
            "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "intermediate_size": c.intermediate_size,
            "vocab_size": c.vocab_size,
            "max_position_embeddings": c.max_position_embeddings,
            "feature_dim": c.img_dim,
            "location_dim": LOC_DIM,
            "label_dim": c.img_label_dim,
        },
        "text": {
            "vocab": "vocab.txt",
            "lowercase": lowercase,
            "max_length": max_text_length,
            "special_tokens": {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]",
                               "unk": "[UNK]", "mask": "[MASK]"},
        },
        "regions": {"labels": "region_labels.txt", "background_index": 0},
        "heads": {"itm": True, "rank": model.rank_output is not None,
                  "mlm": "mlm_head" in graphs, "mrc": "mrc_head" in graphs,
                  "attention": "encoder_attention" in graphs},
        "graphs": manifest_graphs,
        "provenance": dict(provenance, exported=datetime.datetime.now(datetime.timezone.utc)
                           .strftime("%Y-%m-%dT%H:%M:%SZ"), torch_version=torch.__version__,
                           opset=OPSET),
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest


CLI_DESCRIPTION = """Exports an official-format UNITER checkpoint to a model bundle the Go service loads.

    python3 -m uniter.export --checkpoint uniter-base.pt --config uniter-base.json \\
        --vocab vocab.txt --labels region_labels.txt --name uniter-base --out bundles/uniter-base

(from models/, or with models/ on PYTHONPATH). The checkpoint is a flat state dict (`uniter.`
prefix; legacy gamma/beta names and missing tied keys are handled). The key report is printed;
--strict refuses any missing or unexpected key.
"""


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.export", description=CLI_DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="official-format .pt state dict")
    ap.add_argument("--config", required=True, help="official config JSON (uniter-base.json fields)")
    ap.add_argument("--vocab", required=True, help="BERT WordPiece vocab.txt")
    ap.add_argument("--labels", required=True, help="detector class names, one per line, background first")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--lowercase", action="store_true", help="uncased vocabulary (UNITER uses cased)")
    ap.add_argument("--max-text-length", type=int, default=60)
    ap.add_argument("--rank", action="store_true", help="keep a fine-tuned rank_output head")
    ap.add_argument("--strict", action="store_true", help="fail on missing or unexpected keys")
    ap.add_argument("--description", default="")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    cfg = UniterConfig.from_json(args.config)
    model = UniterForPretraining(cfg, with_rank=args.rank)
    report = load_checkpoint(model, args.checkpoint, strict=args.strict)
    print(report, file=sys.stderr)
    with open(args.labels, encoding="utf-8") as f:
        labels = [line.rstrip("\n") for line in f if line.strip()]
    write_bundle(model, args.out, name=args.name, vocab_path=args.vocab, region_labels=labels,
                 lowercase=args.lowercase, max_text_length=args.max_text_length,
                 random_weights=False, description=args.description,
                 provenance={"checkpoint": os.path.abspath(args.checkpoint),
                             "config": os.path.abspath(args.config),
                             "missing_keys": report.missing, "unexpected_keys": report.unexpected})
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
