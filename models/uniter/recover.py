"""A trainable checkpoint back from a bundle's ONNX graphs, so that a shipped model can be
fine-tuned further without its training run's files (which live in a work folder, not in git).

The graphs hold every weight the service uses: the encoder with the ITM (and rank) head in
encoder.onnx, the MLM head in mlm_head.onnx, the MRC head in mrc_head.onnx. What no graph holds
— the MRFR head's own layers and the [MASK] region embedding, used only by region-masking
pre-training — keeps the model's fresh initialisation and is listed.

How a parameter is found: the exporter renames initializers (a transposed weight becomes
`onnx::MatMul_N`, numbered by trace order) and merges initializers of equal value (the second
one becomes an Identity of the first), so names alone do not say which tensor is which. A probe
model of the same config, every parameter distinct random values, is exported with the same
exporter; each probe parameter is found by value (as is, or transposed) among the probe graph's
initializers, then the node and input slot that consume it name the bundle's tensor (node names
are module scopes, the same in both traces). The result is checked by exporting the recovered
model again: every initializer input of every node must equal the bundle's bit for bit.

Command line (``python3 -m uniter.recover --help``): a bundle back to a training run's files.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Dict, List, Tuple

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .export import write_bundle
from .model import UniterConfig, UniterForPretraining

GRAPHS = ("encoder", "mlm_head", "mrc_head")


class _Graph:
    """One ONNX graph's initializers (Identity aliases resolved) and node inputs."""

    def __init__(self, path: str):
        g = onnx.load(path).graph
        self.arrays: Dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:  # an initializer merged into an equal one: Identity(kept initializer)
            if n.op_type == "Identity" and n.input[0] in self.arrays:
                self.arrays[n.output[0]] = self.arrays[n.input[0]]
        self.inputs: Dict[str, List[str]] = {n.name: list(n.input) for n in g.node}
        self.first_use: Dict[str, Tuple[str, int]] = {}
        for n in g.node:
            for slot, x in enumerate(n.input):
                if x in self.arrays:
                    self.first_use.setdefault(x, (n.name, slot))

    def weight_inputs(self):
        """(node, slot, array) for every initializer input of every node."""
        for node, ins in self.inputs.items():
            for slot, x in enumerate(ins):
                if x in self.arrays:
                    yield node, slot, self.arrays[x]


def config_from_manifest(manifest: dict) -> Tuple[UniterConfig, bool]:
    m = manifest["model"]
    if m.get("architecture") != "uniter":
        raise ValueError(f"architecture {m.get('architecture')!r}: only uniter bundles can be recovered")
    cfg = UniterConfig.from_dict({
        "vocab_size": m["vocab_size"], "hidden_size": m["hidden_size"],
        "num_hidden_layers": m["num_hidden_layers"], "num_attention_heads": m["num_attention_heads"],
        "intermediate_size": m["intermediate_size"], "max_position_embeddings": m["max_position_embeddings"],
        "img_dim": m["feature_dim"], "img_label_dim": m["label_dim"]})
    return cfg, bool(manifest.get("heads", {}).get("rank"))


def _export_graphs(model: UniterForPretraining, bundle_dir: str, manifest: dict, out: str) -> Dict[str, _Graph]:
    with open(os.path.join(bundle_dir, manifest["regions"]["labels"]), encoding="utf-8") as f:
        labels = f.read().splitlines()
    write_bundle(model, out, name="probe", vocab_path=os.path.join(bundle_dir, manifest["text"]["vocab"]),
                 region_labels=labels, lowercase=True, max_text_length=manifest["text"]["max_length"],
                 random_weights=True, provenance={}, graphs=list(GRAPHS),
                 ot_in_graph="ot_in_graph" in manifest.get("provenance", {}))  # the same transport nodes
    return {g: _Graph(os.path.join(out, f"{g}.onnx")) for g in GRAPHS}


def recover(bundle_dir: str, seed: int = 0) -> Tuple[UniterForPretraining, List[str]]:
    """The bundle's model as PyTorch, and the state-dict keys no graph holds (freshly initialised)."""
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    missing = [g for g in GRAPHS if g not in manifest["graphs"]]
    if missing:
        raise ValueError(f"{bundle_dir} has no {', '.join(missing)} graph: the weights are not all there")
    cfg, with_rank = config_from_manifest(manifest)
    have = {g: _Graph(os.path.join(bundle_dir, manifest["graphs"][g]["file"])) for g in GRAPHS}

    probe = UniterForPretraining(cfg, with_rank=with_rank)
    probe.init_weights(seed)
    fresh = {k: v.clone() for k, v in probe.state_dict().items()}
    with torch.no_grad():  # distinct values everywhere, so that the match by value is unique
        for p in probe.parameters():
            p.copy_(torch.randn_like(p))
    with tempfile.TemporaryDirectory() as d:
        traced = _export_graphs(probe, bundle_dir, manifest, d)

    state, kept = {}, []
    for key, value in probe.state_dict().items():
        a = value.numpy()
        found = None
        for g in GRAPHS:
            for name, x in traced[g].arrays.items():
                if x.shape == a.shape and np.array_equal(x, a):
                    found = (g, name, False)
                elif a.ndim == 2 and x.shape == a.T.shape and np.array_equal(x, a.T):
                    found = (g, name, True)
                if found:
                    break
            if found:
                break
        if found is None:
            kept.append(key)
            state[key] = fresh[key]
            continue
        g, name, transposed = found
        node, slot = traced[g].first_use[name]
        if node not in have[g].inputs:
            raise ValueError(f"{g}: node {node} is not in the bundle's graph (another exporter?)")
        x = have[g].arrays[have[g].inputs[node][slot]]
        state[key] = torch.from_numpy(np.array(x.T if transposed else x))

    model = UniterForPretraining(cfg, with_rank=with_rank)
    model.load_state_dict(state)
    model.eval()
    with tempfile.TemporaryDirectory() as d:
        back = _export_graphs(model, bundle_dir, manifest, d)
    for g in GRAPHS:
        got = {(node, slot): x for node, slot, x in back[g].weight_inputs()}
        want = {(node, slot): x for node, slot, x in have[g].weight_inputs()}
        if got.keys() != want.keys():
            raise ValueError(f"{g}: the re-exported graph has other weight inputs than the bundle's")
        for k, x in want.items():
            if not np.array_equal(got[k], x):
                raise ValueError(f"{g}: {k[0]} input {k[1]} differs after recovery")
    return model, kept


CLI_DESCRIPTION = """Recovers a trainable checkpoint from a bundle, to fine-tune a shipped model further:

    python3 -m uniter.recover --bundle bundles/shapes-uniter --out RUN
    python3 -m uniter.pretrain --init RUN/final.pt --config RUN/config.json ...

(from models/, or with models/ on PYTHONPATH) writes RUN/final.pt (official layout), RUN/final.json
(where it came from; the state-dict keys no graph holds, freshly initialised: the MRFR head and
the [MASK] region embedding) and RUN/config.json. Every weight the graphs hold comes back bit for
bit: the recovered model is exported again and compared with the bundle's graphs.
"""


def main(argv=None):
    from .pretrain import save_checkpoint

    ap = argparse.ArgumentParser(prog="python3 -m uniter.recover", description=CLI_DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="bundle folder (manifest.json, encoder.onnx, mlm_head.onnx, mrc_head.onnx)")
    ap.add_argument("--out", required=True, help="folder for final.pt, final.json and config.json")
    ap.add_argument("--seed", type=int, default=0, help="initialisation of the weights no graph holds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        model, fresh = recover(args.bundle, seed=args.seed)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{args.bundle}: {e}")
    with open(os.path.join(args.bundle, "manifest.json")) as f:
        manifest = json.load(f)
    cfg = model.config
    config = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__ if k != "extra"}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_checkpoint(model, os.path.join(args.out, "final.pt"), {
        "recovered_from": os.path.abspath(args.bundle), "bundle_name": manifest.get("name"),
        "bundle_provenance": manifest.get("provenance"), "config": config,
        "freshly_initialised": fresh, "seed": args.seed})
    print(f"wrote {args.out}/final.pt ({len(fresh)} keys no graph holds, freshly initialised: {fresh})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
