"""Exports a UNITER checkpoint (pre-training or an official fine-tuned model) to ONNX and writes a
model bundle.

A bundle is a folder the Go service loads without guessing anything:

    manifest.json           dims, task (name, official class, its label file / layout), heads,
                            graphs with their I/O names/dtypes/shapes, tokenizer, label files,
                            provenance (everything the Go side must know)
    encoder.onnx            [text | regions] → pooled, hidden, then the heads that have weights:
                            itm_logits, rank_logits, vqa_logits, ve_logits, re_logits
    encoder_attention.onnx  the same graph, also returning per-layer attention probabilities
    nlvr2.onnx              NLVR2 only: text + two images → nlvr2_logits (the official paired,
                            triplet or paired-attention model); encoder.onnx is then one
                            (text, image) pair with pooled and hidden only
    mlm_head.onnx           hidden states of text positions → vocabulary logits (pretrain)
    mrc_head.onnx           hidden states of region positions → detector-class logits (pretrain)
    vocab.txt               BERT WordPiece vocabulary
    region_labels.txt       one detector class name per line, background first
    answers.txt             VQA: one answer a line, in label-index order
    ve_labels.txt           VE: contradiction, entailment, neutral

A head whose weights are not in the checkpoint is neither exported nor declared.

The encoder takes the padded layout: text padded to T, regions padded to N, with masks that are
1 on real positions. UNITER's own code packs each pair's text and regions with no gap between
them; the masks make the padded layout give the same outputs.

`precision="int8"` (``--precision int8``) writes the encoder graphs (encoder, encoder_attention,
nlvr2) dynamically quantized (uniter.quantize: int8 weights per output channel, MatMulInteger) and
records ``"precision": "int8"`` in the manifest; without it the manifest has no precision (fp32).
`precision="fp32-fused"` fuses the encoder graphs' self-attention and GELU into ONNX Runtime's
com.microsoft.Attention and Gelu (uniter.fuse); `precision="fp16"` does that and converts them to
float16 (inputs and outputs stay float32), for the CUDA provider.

`ot_in_graph=True` (``--ot-in-graph``; default off) appends UNITER's word-region optimal transport
(IPOT, uniter.ot_graph) to the encoder graphs: extra outputs ``ot_distance`` [batch] and
``ot_plan`` [batch, text, regions], which the Go service reads instead of running heads.Align per
pair (what pays on a GPU); the settings go to ``provenance.ot_in_graph``.

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
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .fuse import FUSED_PRECISIONS, PRECISION_FP16, fuse_bundle_graphs
from .model import LOC_DIM, UniterForPretraining
from .ot import optimal_transport_dist
from .ot_graph import OT_OUTPUTS, add_ot_to_bundle_graphs
from .quantize import PRECISIONS, quantize_bundle_graphs
from .tasks import (ENCODER_HEAD_OUTPUTS, HEADS, TASKS, VE_LABELS, build_model, detect_task,
                    encoder_head_outputs, load_task_checkpoint, model_heads, resolve_config,
                    task_manifest)

MANIFEST_FORMAT = 1
OPSET = 17


class EncoderGraph(nn.Module):
    """The pre-training model's encoder in the legacy output order (itm_logits, pooled, hidden,
    rank_logits, attention): what bench.py times and fingerprints. Bundles are exported by
    TaskEncoderGraph, which computes the same with `pooled` and `hidden` first."""

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


class TaskEncoderGraph(nn.Module):
    """One (text, image) pair → pooled, hidden, then the outputs of `heads` (itm_logits,
    rank_logits, vqa_logits, ve_logits, re_logits: tasks.ENCODER_HEAD_OUTPUTS order), then
    attention [B, layers, heads, S, S] when asked."""

    def __init__(self, model: nn.Module, heads: Sequence[str], with_attention: bool):
        super().__init__()
        self.m = model
        self.heads = list(heads)
        self.with_attention = with_attention

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        hidden, pooled, attn = self.m.uniter(input_ids, text_mask, img_feat, img_loc, img_mask)
        outs = [pooled, hidden] + [t for _, t in encoder_head_outputs(
            self.m, self.heads, pooled, hidden, text_mask, img_mask)]
        if self.with_attention:
            outs.append(torch.stack(attn, dim=1))
        return tuple(outs)


class Nlvr2Graph(nn.Module):
    """The NLVR2 model on both images ([B, 2, N, ...]) → nlvr2_logits [B, 2]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.m = model

    def forward(self, input_ids, text_mask, img_feat, img_loc, img_mask):
        return self.m(input_ids, text_mask, img_feat, img_loc, img_mask)


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


def encoder_inputs(model: nn.Module, images: int = 1) -> List[dict]:
    c = model.config
    pre = ["batch", 2] if images == 2 else ["batch"]
    return [
        _io("input_ids", "int64", ["batch", "text"]),
        _io("text_mask", "int64", ["batch", "text"]),
        _io("img_feat", "float32", pre + ["regions", c.img_dim]),
        _io("img_loc", "float32", pre + ["regions", LOC_DIM]),
        _io("img_mask", "int64", pre + ["regions"]),
    ]


def head_output_shape(model: nn.Module, head: str) -> List:
    return {"itm": ["batch", 2], "rank": ["batch", 1],
            "vqa": ["batch", getattr(model, "num_answer", 0)], "ve": ["batch", 3],
            "re": ["batch", "regions"]}[head]


def encoder_io(model: nn.Module, with_attention: bool, heads: Optional[Sequence[str]] = None):
    """Declared inputs and outputs of the encoder graphs; `heads` defaults to every head the
    model has."""
    c = model.config
    heads = model_heads(model) if heads is None else heads
    outputs = [_io("pooled", "float32", ["batch", c.hidden_size]),
               _io("hidden", "float32", ["batch", "sequence", c.hidden_size])]
    for head, name in ENCODER_HEAD_OUTPUTS:
        if head in heads:
            outputs.append(_io(name, "float32", head_output_shape(model, head)))
    if with_attention:
        outputs.append(_io("attention", "float32", ["batch", c.num_hidden_layers,
                                                     c.num_attention_heads, "sequence", "sequence"]))
    return encoder_inputs(model), outputs


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


def example_inputs(model: nn.Module, batch=2, text=5, regions=3, images: int = 1):
    """Tracing inputs; `images` 2 gives the NLVR2 graph's [B, 2, N, ...] image inputs."""
    c = model.config
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, c.vocab_size, (batch, text), generator=g)
    pre = (batch, 2) if images == 2 else (batch,)
    return (ids, torch.ones(batch, text, dtype=torch.long),
            torch.randn(*pre, regions, c.img_dim, generator=g),
            torch.rand(*pre, regions, LOC_DIM, generator=g),
            torch.ones(*pre, regions, dtype=torch.long))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_graphs(model: nn.Module, heads: Sequence[str]) -> List[str]:
    """The graphs a bundle of `model` gets: the head graphs only for heads with weights."""
    if task_manifest(model)["name"] == "nlvr2":
        return ["nlvr2", "encoder", "encoder_attention"]
    return (["encoder", "encoder_attention"] + (["mlm_head"] if "mlm" in heads else [])
            + (["mrc_head"] if "mrc" in heads else []))


def write_bundle(model: nn.Module, out_dir: str, *, name: str, vocab_path: str,
                 region_labels: List[str], lowercase: bool, max_text_length: int,
                 random_weights: bool, provenance: dict, description: str = "",
                 graphs: Optional[List[str]] = None, heads: Optional[Sequence[str]] = None,
                 answers: Optional[List[str]] = None, precision: str = "fp32",
                 ot_in_graph: bool = False) -> dict:
    """Exports the graphs and writes manifest.json; returns the manifest.

    `precision` "int8" quantizes the encoder graphs after export (uniter.quantize), "fp32-fused"
    fuses their attention and GELU into ONNX Runtime contrib operators and "fp16" also converts
    them to float16 (uniter.fuse); each is recorded in the manifest. "fp32" (the default) leaves
    the manifest without a precision.

    `ot_in_graph` appends the word-region optimal transport to the encoder graphs (after any
    quantization; the transport stays float32): outputs ot_distance and ot_plan
    (uniter.ot_graph), settings in provenance.ot_in_graph.

    `model` is UniterForPretraining or a tasks.py model. `heads` names the heads whose weights
    are trained (came from the checkpoint); the default is every head the model has. Only those
    are exported and declared. `answers` is the VQA answer list in label-index order."""
    c = model.config
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: want one of {', '.join(PRECISIONS)}")
    if len(region_labels) != c.img_label_dim:
        raise ValueError(f"{len(region_labels)} region labels for img_label_dim {c.img_label_dim}")
    with open(vocab_path, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    if vocab_size != c.vocab_size:
        raise ValueError(f"vocab has {vocab_size} tokens, config says {c.vocab_size}")
    if max_text_length > c.max_position_embeddings:
        raise ValueError("max_text_length exceeds max_position_embeddings")
    task = task_manifest(model)
    have = model_heads(model)
    heads = have if heads is None else [h for h in HEADS if h in heads]
    if set(heads) - set(have):
        raise ValueError(f"heads {sorted(set(heads) - set(have))}: the model has no such head")
    if task["name"] == "vqa":
        if answers is None or len(answers) != model.num_answer:
            raise ValueError(f"vqa: {model.num_answer} answers needed, got "
                             f"{None if answers is None else len(answers)}")
        bad = [a for a in answers if "\n" in a or "\r" in a]
        if bad:
            raise ValueError(f"vqa answers with a line break cannot be written one a line: {bad}")
    graphs = graphs or default_graphs(model, heads)
    for g, head in (("mlm_head", "mlm"), ("mrc_head", "mrc"), ("nlvr2", "nlvr2")):
        if g in graphs and head not in heads:
            raise ValueError(f"graph {g}: the {head} head has no trained weights")
    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    ex = example_inputs(model)
    enc_heads = [] if task["name"] == "nlvr2" else heads
    manifest_graphs = {}
    for g in graphs:
        path = os.path.join(out_dir, f"{g}.onnx")
        if g in ("encoder", "encoder_attention"):
            ins, outs = encoder_io(model, g == "encoder_attention", enc_heads)
            _export(TaskEncoderGraph(model, enc_heads, g == "encoder_attention"), ex, ins, outs, path)
        elif g == "nlvr2":
            ins = encoder_inputs(model, images=2)
            outs = [_io("nlvr2_logits", "float32", ["batch", 2])]
            _export(Nlvr2Graph(model), example_inputs(model, images=2), ins, outs, path)
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
    if task["name"] == "vqa":
        with open(os.path.join(out_dir, task["labels"]), "w", encoding="utf-8") as f:
            f.write("".join(a + "\n" for a in answers))
    elif task["name"] == "ve":
        with open(os.path.join(out_dir, task["labels"]), "w", encoding="utf-8") as f:
            f.write("".join(a + "\n" for a in VE_LABELS))
    head_flags = {"itm": "itm" in heads, "rank": "rank" in heads,
                  "mlm": "mlm_head" in graphs, "mrc": "mrc_head" in graphs,
                  "attention": "encoder_attention" in graphs}
    head_flags.update({h: h in heads for h in ("vqa", "ve", "nlvr2", "re")})
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
        "task": task,
        "heads": head_flags,
        "graphs": manifest_graphs,
        "provenance": dict(provenance, exported=datetime.datetime.now(datetime.timezone.utc)
                           .strftime("%Y-%m-%dT%H:%M:%SZ"), torch_version=torch.__version__,
                           opset=OPSET),
    }
    if precision == "int8":
        quantize_bundle_graphs(out_dir, manifest)
    elif precision in FUSED_PRECISIONS:
        fuse_bundle_graphs(out_dir, manifest, fp16=precision == PRECISION_FP16)
    if ot_in_graph:
        add_ot_to_bundle_graphs(out_dir, manifest)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest


# ---------------------------------------------------------------------------------------------
# Checkpoint → bundle


def read_answers(path: str) -> List[str]:
    """The VQA answers in label-index order from the official ans2label JSON ({answer: index},
    utils/ans2label.json) or a label2ans JSON list."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, list):
        return [str(a) for a in data]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an ans2label object {{answer: index}} or a list")
    by_index = {}
    for a, i in data.items():
        if not isinstance(i, int) or i in by_index:
            raise ValueError(f"{path}: answer {a!r} has index {i!r} (indices must be distinct ints)")
        by_index[i] = a
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(f"{path}: the indices are not 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def read_labels(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def verify_bundle_onnxruntime(model: nn.Module, out_dir: str, manifest: dict, atol: float = 1e-4,
                              batch: int = 3, text: int = 7, regions: int = 4,
                              int8_atol: float = 0.1) -> Dict[str, float]:
    """Runs every graph of the bundle with ONNX Runtime (Python) on inputs of other sizes than
    the tracing example's, with padding, and compares each output with PyTorch; returns the worst
    absolute difference per graph/output. Raises when one exceeds `atol` (`int8_atol` for the
    quantized graphs of an int8 bundle and the float16 ones of an fp16 bundle: they differ from
    PyTorch's fp32 by rounding error)."""
    import onnxruntime as ort
    worst = {}
    g = torch.Generator().manual_seed(7)
    for role, spec in manifest["graphs"].items():
        sess = ort.InferenceSession(os.path.join(out_dir, spec["file"]),
                                    providers=["CPUExecutionProvider"])
        if role in ("encoder", "encoder_attention", "nlvr2"):
            args = example_inputs(model, batch, text, regions, images=2 if role == "nlvr2" else 1)
            args[1][0, text - 2:] = 0     # padded text and regions in the first row
            args[4][0, ..., regions - 1:] = 0
            args[2].abs_()
            if role == "nlvr2":
                want = [Nlvr2Graph(model)(*args)]
            else:
                enc_heads = [] if manifest["task"]["name"] == "nlvr2" else \
                    [h for h in HEADS if manifest["heads"].get(h)]
                want = list(TaskEncoderGraph(model, enc_heads, role == "encoder_attention")(*args))
        else:
            n = text if role == "mlm_head" else regions
            args = (torch.randn(batch, n, model.config.hidden_size, generator=g),)
            want = [(MLMHeadGraph(model) if role == "mlm_head" else MRCHeadGraph(model))(*args)]
        # By name: the transport's outputs (ot_in_graph) come from ot.py on PyTorch's hidden.
        want = dict(zip([o["name"] for o in spec["outputs"] if o["name"] not in OT_OUTPUTS], want))
        if OT_OUTPUTS[0] in [o["name"] for o in spec["outputs"]]:
            hidden = want["hidden"].double()
            dist, plan = optimal_transport_dist(hidden[:, :text], hidden[:, text:], args[1] == 0,
                                                args[4] == 0)
            want.update(zip(OT_OUTPUTS, (dist, plan.transpose(1, 2))))
        feeds = {i["name"]: a.numpy() for i, a in zip(spec["inputs"], args)}
        got = sess.run([o["name"] for o in spec["outputs"]], feeds)
        for o, x in zip(spec["outputs"], got):
            w = want[o["name"]]
            d = float(np.abs(x - w.detach().numpy()).max())
            worst[f"{role}/{o['name']}"] = d
            tol = int8_atol if (manifest.get("precision") in ("int8", PRECISION_FP16)
                                and role in ("encoder", "encoder_attention", "nlvr2")) else atol
            if not d <= tol:
                raise ValueError(f"{role} {o['name']}: ONNX Runtime differs from PyTorch by {d:.3e}")
    return worst


def export_checkpoint(checkpoint: str, config: str, vocab: str, labels: str, out: str, name: str, *,
                      task: Optional[str] = None, answers: Optional[str] = None,
                      lowercase: bool = False, max_text_length: int = 60, rank: bool = False,
                      strict: bool = False, description: str = "", random_weights: bool = False,
                      provenance: Optional[dict] = None, verify: bool = True, log=None,
                      precision: str = "fp32", attention: bool = True, ot_in_graph: bool = False):
    """What `python3 -m uniter.export` does: reads the checkpoint, finds its class (or `task`),
    completes the config from the tensors, loads key for key, writes the bundle with the heads
    whose weights the checkpoint holds, and checks it with ONNX Runtime when that is installed.
    `attention` False leaves out encoder_attention.onnx (no attention maps; a smaller bundle).
    `ot_in_graph` appends the word-region optimal transport to the encoder graphs (write_bundle).
    Returns (manifest, report, model)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    sd = torch.load(checkpoint, map_location="cpu")
    if "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    region_labels = read_labels(labels)
    answer_list = read_answers(answers) if answers else None
    choice = detect_task(sd, task, answers_given=answer_list is not None)
    if rank and choice.task == "pretrain":
        choice.with_rank = True
    with open(config) as f:
        cfg_dict = json.load(f)
    cfg = resolve_config(cfg_dict, sd, choice.task, label_count=len(region_labels))
    num_answer = None
    if choice.task == "vqa":
        if answer_list is None:
            raise ValueError("a VQA checkpoint needs its answers: pass --answers ans2label.json "
                             "(the official utils/ans2label.json, answer → index)")
        num_answer = len(answer_list)
        rows = [v.shape[0] for k, v in sd.items() if k.endswith("vqa_output.3.weight")]
        if rows and rows[0] != num_answer:
            raise ValueError(f"the checkpoint's vqa_output has {rows[0]} answers, --answers "
                             f"lists {num_answer}")
    model = build_model(choice, cfg, num_answer)
    report = load_task_checkpoint(model, sd, strict=strict, derive_rank=rank)
    if choice.task == "retrieval" and "rank" not in report.heads:
        raise ValueError("retrieval: the checkpoint has no rank_output (--rank derives it from "
                         "itm_output row 1, as the official init_output)")
    log(f"class {task_manifest(model)['class']}: task {choice.describe()}")
    log(str(report))
    prov = {"checkpoint": os.path.abspath(checkpoint), "config": os.path.abspath(config)}
    prov.update(provenance or {})
    prov.update(missing_keys=report.missing, unexpected_keys=report.unexpected)
    if report.tied_filled:
        prov["derived_keys"] = report.tied_filled
    graphs = [g for g in default_graphs(model, report.heads) if attention or g != "encoder_attention"]
    manifest = write_bundle(model.eval(), out, name=name, vocab_path=vocab, graphs=graphs,
                            region_labels=region_labels, lowercase=lowercase,
                            max_text_length=max_text_length, random_weights=random_weights,
                            description=description, provenance=prov, heads=report.heads,
                            answers=answer_list, precision=precision, ot_in_graph=ot_in_graph)
    if verify and onnxruntime_available():
        worst = verify_bundle_onnxruntime(model, out, manifest)
        log(f"ONNX Runtime matches PyTorch: worst {max(worst.values()):.2e} over {len(worst)} outputs")
    elif verify:
        log("onnxruntime is not installed for Python: the graphs were not run here")
    return manifest, report, model


CLI_DESCRIPTION = """Exports an official-format UNITER checkpoint to a model bundle the Go service loads.

    python3 -m uniter.export --checkpoint uniter-base.pt --config uniter-base.json \\
        --vocab vocab.txt --labels region_labels.txt --name uniter-base --out bundles/uniter-base

(from models/, or with models/ on PYTHONPATH). The checkpoint is a flat state dict as the
official code saves it (`uniter.` prefix; legacy gamma/beta names, a `module.` prefix and missing
tied keys are handled). Its class is read from its keys (--task forces one):

    pretrain   UniterForPretraining (cls, region_classifier, itm_output; rank_output with --rank)
    retrieval  UniterForImageTextRetrieval (itm_output, rank_output)
    vqa        UniterForVisualQuestionAnswering (vqa_output; needs --answers ans2label.json)
    ve         UniterForVisualEntailment (vqa_output with 3 outputs)
    nlvr2      UniterForNlvr2Paired / Triplet / PairedAttn (nlvr2_output, attn1/attn2/attn_pool)
    re         UniterForReferringExpressionComprehension (re_output, linear or MLP)

The official config JSON is taken as it is: img_dim comes from the checkpoint's tensors, the
region label count from region_classifier or else from --labels. Only heads whose weights are in
the checkpoint are exported and declared. The key report (missing, unexpected) is printed; a
missing uniter.* key is refused, --strict refuses any missing or unexpected key. When onnxruntime
is installed for Python, every graph is run and compared with PyTorch.
"""


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.export", description=CLI_DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="official-format .pt state dict")
    ap.add_argument("--config", required=True,
                    help="official config JSON (uniter-base.json fields; img_dim and "
                         "img_label_dim may be absent: read from the checkpoint and --labels)")
    ap.add_argument("--vocab", required=True, help="BERT WordPiece vocab.txt")
    ap.add_argument("--labels", required=True,
                    help="detector class names, one per line, background first (their count is "
                         "img_label_dim when the checkpoint has no region_classifier)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--task", default=None,
                    help="force the class: " + ", ".join(TASKS) + ", or nlvr2-paired, "
                         "nlvr2-triplet, nlvr2-paired-attn (default: read from the keys)")
    ap.add_argument("--answers", default=None,
                    help="VQA: the official ans2label JSON (answer → index); written to the "
                         "bundle as answers.txt in index order")
    ap.add_argument("--lowercase", action="store_true", help="uncased vocabulary (UNITER uses cased)")
    ap.add_argument("--max-text-length", type=int, default=60)
    ap.add_argument("--rank", action="store_true",
                    help="pretrain checkpoint without rank_output: derive it from itm_output row 1 "
                         "(the official init_output); a rank_output in the checkpoint is kept anyway")
    ap.add_argument("--strict", action="store_true", help="fail on missing or unexpected keys")
    ap.add_argument("--description", default="")
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32",
                    help="int8: quantize the encoder graphs dynamically (int8 weights per output "
                         "channel, MatMulInteger; uniter.quantize). fp32-fused: fuse their "
                         "self-attention and GELU into ONNX Runtime's com.microsoft.Attention and "
                         "Gelu; fp16: fused and converted to float16, inputs and outputs float32, "
                         "for the CUDA provider (uniter.fuse). Recorded as \"precision\" in the "
                         "manifest (default: %(default)s)")
    ap.add_argument("--no-attention", dest="attention", action="store_false",
                    help="leave out the attention graph (encoder_attention.onnx): the bundle serves "
                         "everything but attention maps, at about half the size")
    ap.add_argument("--ot-in-graph", action="store_true",
                    help="append the word-region optimal transport (IPOT, 50 iterations, beta 0.5) "
                         "to the encoder graphs: outputs ot_distance [batch] and ot_plan [batch, "
                         "text, regions], read by the service instead of its per-pair Go IPOT (for "
                         "GPUs; uniter.ot_graph; default off)")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    try:
        export_checkpoint(args.checkpoint, args.config, args.vocab, args.labels, args.out, args.name,
                          task=args.task, answers=args.answers, lowercase=args.lowercase,
                          max_text_length=args.max_text_length, rank=args.rank, strict=args.strict,
                          description=args.description, precision=args.precision,
                          attention=args.attention, ot_in_graph=args.ot_in_graph)
    except ValueError as e:
        sys.exit(f"uniter.export: {e}")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
