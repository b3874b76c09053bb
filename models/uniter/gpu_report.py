"""The report of scripts/device/gpu-bench.sh: reads the step logs of one device call and writes
what they measured, next to the speed goals of the GPU work (docs/gpu.md), as Markdown and JSON.

    python3 -m uniter.gpu_report LOGS --md REPORT.md --json REPORT.json

LOGS holds what the script's steps wrote, each file named by its step:

    bench-BUNDLE-ROUND.txt   `go test -bench 'BenchmarkEncoder(GraphOnly)?$'` on the UNITER-base-sized
                             random bundle BUNDLE: base (fp32), base-ot (fp32, transport in the graph),
                             base-fp16, base-fp16-ot, base-fused
    torch-fp32.json, torch-autocast.json (and -meta.json)
                             `python3 -m uniter.bench torch --device cuda [--autocast]`: PyTorch eager
    butd-FORM.txt            BenchmarkBUTDDetector: split-cuda, split-cpu, one-cpu, and one-cuda (the
                             one graph on CUDA, which strict placement must refuse at load)
    agreement-PREC-test-1k.json
                             `uniter eval --reference` of the default model's PREC export (fp16, fused)
    profile-BUNDLE.json      `uniter profile-summary --json` of ONNX Runtime's profile of BUNDLE's
                             encoder graph at the largest batch
    machine.txt              nproc and nvidia-smi

Each figure is the best of the rounds that have it (a GPU shared with nothing; other load only
slows a round down). A goal whose inputs are missing is "not measured", never met.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import sys

GOAL_BATCH = 128
BUNDLES = ("base", "base-ot", "base-fp16", "base-fp16-ot", "base-fused")
LABELS = {"base": "fp32", "base-ot": "fp32, transport in the graph", "base-fp16": "fp16 (fused)",
          "base-fp16-ot": "fp16 (fused), transport in the graph", "base-fused": "fp32 fused"}

_BENCH = re.compile(r"^Benchmark(Encoder|EncoderGraphOnly)/batch=(\d+)(?:-\d+)?\s")
_BUTD = re.compile(r"^BenchmarkBUTDDetector/image=(\S+?)(?:-\d+)?\s")
_INPUT = re.compile(r"^butd-image: (\S+) .*-> detector input (\d+)x(\d+)")
_METRIC = re.compile(r"([-+\d.e]+) ([\w/-]+)")


def metrics(line: str) -> dict:
    """A `go test -bench` result line's custom metrics by unit (pairs/s, ot-max-diff, ...)."""
    fields = line.split("\t")
    return {m[2]: float(m[1]) for f in fields[2:] for m in [_METRIC.fullmatch(f.strip())] if m}


def read_encoder(logs: str) -> dict:
    """{"pairs_per_s": {bundle: {"Encoder"|"EncoderGraphOnly": {batch: [pairs/s per round]}}},
    "ot_max_diff": {bundle: worst}, "nonstrict": [bundles strict placement refused, run again
    without it]} from bench-BUNDLE-ROUND[-nonstrict].txt."""
    rates: dict = {}
    diffs: dict = {}
    nonstrict = set()
    for path in sorted(glob.glob(os.path.join(logs, "bench-*.txt"))):
        m = re.fullmatch(r"bench-(.+)-(\d+)(-nonstrict)?\.txt", os.path.basename(path))
        if not m or m[1] not in BUNDLES:
            continue
        bundle = m[1]
        if m[3]:
            nonstrict.add(bundle)
        for line in open(path):
            b = _BENCH.match(line)
            if not b:
                continue
            got = metrics(line)
            if "pairs/s" in got:
                rates.setdefault(bundle, {}).setdefault(b[1], {}).setdefault(int(b[2]), []).append(got["pairs/s"])
            if "ot-max-diff" in got:
                diffs[bundle] = max(diffs.get(bundle, 0.0), got["ot-max-diff"])
    return {"pairs_per_s": rates, "ot_max_diff": diffs, "nonstrict": sorted(nonstrict)}


def read_torch(logs: str) -> dict:
    """{"fp32"|"autocast": {"pairs_per_s": {batch: best}, "meta": {...}}} from torch-*.json."""
    out = {}
    for kind in ("fp32", "autocast"):
        path = os.path.join(logs, f"torch-{kind}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            rates = {int(k): v for k, v in json.load(f).items()}
        meta_path = os.path.join(logs, f"torch-{kind}-meta.json")
        meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
        out[kind] = {"pairs_per_s": rates, "meta": meta}
    return out


def read_butd(logs: str) -> dict:
    """{form: {"images": {name: {"input": "HxW", "images_per_s": best, ...}}, "header": str,
    "error": str}} from butd-FORM.txt."""
    out = {}
    for path in sorted(glob.glob(os.path.join(logs, "butd-*.txt"))):
        form = os.path.basename(path)[len("butd-"):-len(".txt")]
        entry: dict = {"images": {}}
        inputs = {}
        text = open(path).read()
        for line in text.splitlines():
            if line.startswith("butd-bundle: "):
                entry["header"] = line[len("butd-bundle: "):]
            i = _INPUT.match(line)
            if i:
                inputs[i[1]] = f"{i[2]}x{i[3]}"
            b = _BUTD.match(line)
            if b:
                got = metrics(line)
                img = entry["images"].setdefault(b[1], {"input": inputs.get(b[1])})
                if "images/s" in got:
                    img["images_per_s"] = max(img.get("images_per_s", 0.0), got["images/s"])
                    for k in ("detector-ms", "proposals", "regions"):
                        if k in got:
                            img[k] = got[k]
        if not entry["images"]:
            entry["error"] = failure(text)
        out[form] = entry
    return out


def failure(text: str) -> str:
    """The line of a failed step's output that says why: a crash first, then ONNX Runtime's
    refusal of CPU nodes, then any error."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for keys in (("SIGSEGV", "SIGFPE", "SIGABRT", "panic:", "signal:"), ("fallback", "CPU EP"),
                 ("rror", "FAIL")):
        for l in lines:
            if any(k in l for k in keys):
                return l
    return "no result"


def refused_at_load(entry) -> bool | None:
    """Whether the one-graph detector on CUDA was refused by strict placement (True), ran or
    crashed (False), or was not tried (None)."""
    if entry is None:
        return None
    err = entry.get("error", "")
    return not entry["images"] and ("fallback" in err or "CPU EP" in err)


def read_agreement(logs: str) -> dict:
    """{precision: the agreement section of `uniter eval --reference`, with its split} from
    agreement-PRECISION-SPLIT.json."""
    out = {}
    for path in sorted(glob.glob(os.path.join(logs, "agreement-*.json"))):
        m = re.fullmatch(r"agreement-(.+?)-(test-\w+)\.json", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            rep = json.load(f)
        if rep.get("agreement"):
            out[m[1]] = dict(rep["agreement"], split=m[2], itm_accuracy=rep.get("itm_accuracy"),
                             ir_r1=rep.get("ir_r1"), pairs_per_second=rep.get("pairs_per_second"))
    return out


MEMCPY_OPS = ("MemcpyFromHost", "MemcpyToHost")


def read_profiles(logs: str) -> dict:
    """{bundle: {"runs", "ms_per_run", "kernel_ms_per_run", "memcpy_per_run", "top": [(op,
    ms per run, share of kernel time)]}} from profile-BUNDLE.json (uniter profile-summary
    --json: one object per profile file, summed here)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(logs, "profile-*.json"))):
        bundle = os.path.basename(path)[len("profile-"):-len(".json")]
        runs, total, ops = 0, 0.0, {}
        dec, text, i = json.JSONDecoder(), open(path).read(), 0
        while True:  # a stream of JSON objects, one per file
            while i < len(text) and text[i].isspace():
                i += 1
            if i == len(text):
                break
            obj, i = dec.raw_decode(text, i)
            p = obj["profile"]
            runs += p["runs"]
            total += p["total"] / 1e6
            for o in p["ops"]:
                calls, ms = ops.get(o["op"], (0, 0.0))
                ops[o["op"]] = (calls + o["calls"], ms + o["time_ns"] / 1e6)
        if not runs:
            continue
        kernels = sum(ms for _, ms in ops.values())
        top = sorted(ops.items(), key=lambda kv: -kv[1][1])[:8]
        out[bundle] = {"runs": runs, "ms_per_run": total / runs, "kernel_ms_per_run": kernels / runs,
                       "memcpy_per_run": sum(ops.get(m, (0, 0))[0] for m in MEMCPY_OPS) / runs,
                       "top": [(op, ms / runs, ms / kernels if kernels else math.nan) for op, (_, ms) in top]}
    return out


def best(xs) -> float:
    return max(xs) if xs else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def goals(enc: dict, torch_: dict, butd: dict, agree: dict, profiles: dict | None = None) -> list:
    """The goals of the GPU work, each {"goal", "measured", "value", "met"}; met is None when
    an input is missing."""
    rate = enc["pairs_per_s"]

    def r(bundle, bench, batch=GOAL_BATCH):
        return best(rate.get(bundle, {}).get(bench, {}).get(batch, []))

    def g(name, value, threshold, what, at_least=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return {"goal": name, "measured": "not measured", "value": None, "met": None}
        met = value >= threshold if at_least else value <= threshold
        return {"goal": name, "measured": what.format(value), "value": value, "met": met}

    encoders = {b: r(b, "EncoderGraphOnly") for b in ("base", "base-fp16", "base-fused")}
    fastest = max((b for b in encoders if not math.isnan(encoders[b])), key=encoders.get, default=None)
    eager = torch_.get("fp32", {}).get("pairs_per_s", {}).get(GOAL_BATCH, math.nan)
    auto = torch_.get("autocast", {}).get("pairs_per_s", {}).get(GOAL_BATCH, math.nan)
    enc_best = encoders[fastest] if fastest else math.nan
    label = LABELS.get(fastest, "")
    out = [
        g(f"encoder ≥ 3× PyTorch eager fp32 (batch {GOAL_BATCH})", _ratio(enc_best, eager), 3.0,
          "{:.2f}× (" + label + ")"),
        g(f"encoder ≥ 1.3× PyTorch fp16 autocast (batch {GOAL_BATCH})", _ratio(enc_best, auto), 1.3,
          "{:.2f}× (" + label + ")"),
    ]
    # Match with the graph's transport against the same precision's encoder alone.
    pairs = [("base-fp16-ot", "base-fp16"), ("base-ot", "base")]
    matched = [(m, e) for m, e in pairs if not math.isnan(r(m, "Encoder")) and not math.isnan(r(e, "EncoderGraphOnly"))]
    if matched:
        m, e = matched[0]
        out.append(g(f"Match ≥ 90% of graph-only (batch {GOAL_BATCH})",
                     _ratio(r(m, "Encoder"), r(e, "EncoderGraphOnly")), 0.90,
                     "{:.0%} (" + LABELS[m] + ")"))
    else:
        out.append(g(f"Match ≥ 90% of graph-only (batch {GOAL_BATCH})", None, 0.9, ""))
    match_best = max((r(b, "Encoder") for b in BUNDLES if not math.isnan(r(b, "Encoder"))), default=math.nan)
    out.append(g(f"Match ≥ 15,000 pairs/s (batch {GOAL_BATCH})", match_best, 15000, "{:,.0f} pairs/s"))
    diffs = enc["ot_max_diff"]
    out.append(g("graph transport within 1e-5 of heads.Align", max(diffs.values()) if diffs else None,
                 1e-5, "{:.1e}", at_least=False))
    cuda = butd.get("split-cuda", {}).get("images", {})
    cpu = butd.get("split-cpu", {}).get("images", {})
    big = [n for n, v in cuda.items() if v.get("input") == "600x1000" and n in cpu]
    out.append(g("detector on CUDA ≥ 10× its CPU images/s (600×1000)",
                 _ratio(cuda[big[0]].get("images_per_s", math.nan), cpu[big[0]].get("images_per_s", math.nan)) if big else None,
                 10.0, "{:.1f}×"))
    one_cuda = butd.get("one-cuda")
    out.append({"goal": "one-graph detector refused on CUDA at load (no crash)",
                "measured": "not measured" if one_cuda is None else one_cuda.get("error", "it ran"),
                "value": None, "met": refused_at_load(one_cuda)})
    for bundle, p in sorted((profiles or {}).items()):
        out.append(g(f"no host round trip inside the graph ({LABELS.get(bundle, bundle)}: Memcpy nodes per run)",
                     p["memcpy_per_run"], 0, "{:g}", at_least=False))
    fp16 = agree.get("fp16") if agree.get("fp16", {}).get("split") == "test-1k" else None
    out.append(g("fp16: same ITM decision on ≥ 99.9% of test-1k pairs", fp16["same_decision"] if fp16 else None,
                 0.999, "{:.3%}"))
    out.append(g("fp16: logits within 1e-2 of fp32", fp16["max_logit_diff"] if fp16 else None, 1e-2,
                 "{:.2e} (largest)", at_least=False))
    return out


def _f(x, fmt="{:,.0f}"):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def markdown(rep: dict) -> str:
    enc, torch_ = rep["encoder"]["pairs_per_s"], rep["torch"]

    def rate(bundle, bench, n):
        return best(enc.get(bundle, {}).get(bench, {}).get(n, []))

    batches = sorted({b for v in enc.values() for k in v.values() for b in k} |
                     {b for t in torch_.values() for b in t["pairs_per_s"]})
    graphs = [b for b in ("base", "base-fp16", "base-fused") if b in enc]
    lines = [f"## GPU bench ({rep['machine'] or 'machine not recorded'})", "",
             "UNITER-base-sized random bundle, 20 tokens + 36 regions per pair; pairs/s, the best round. "
             "The encoder alone (Go: BenchmarkEncoderGraphOnly; PyTorch: the same module eager):", "",
             "| batch | " + " | ".join(f"graph, {LABELS[b]}" for b in graphs) +
             " | PyTorch eager fp32 | PyTorch autocast fp16 | fastest graph / eager | fastest graph / autocast |",
             "|---:|" + "---:|" * (len(graphs) + 4)]
    for n in batches:
        fastest = max([rate(b, "EncoderGraphOnly", n) for b in graphs] or [math.nan])
        eager, auto = (torch_.get(k, {}).get("pairs_per_s", {}).get(n, math.nan) for k in ("fp32", "autocast"))
        row = [_f(rate(b, "EncoderGraphOnly", n)) for b in graphs]
        row += [_f(eager), _f(auto), _f(_ratio(fastest, eager), "{:.2f}×"), _f(_ratio(fastest, auto), "{:.2f}×")]
        lines.append(f"| {n} | " + " | ".join(row) + " |")
    lines += ["", "`Match` (tokenizer, batching, encoder, ITM and transport) against the encoder alone of "
              "the same bundle; the transport in Go (heads.Align per pair) or in the graph:", "",
              "| bundle | batch | `Match` | graph only | `Match` / graph | graph transport vs heads.Align |",
              "|---|---:|---:|---:|---:|---:|"]
    for b in BUNDLES:
        for n in batches if b in enc else []:
            m, g = rate(b, "Encoder", n), rate(b, "EncoderGraphOnly", n)
            diff = rep["encoder"]["ot_max_diff"].get(b)
            lines.append(f"| {LABELS[b]} | {n} | {_f(m)} | {_f(g)} | {_f(_ratio(m, g), '{:.0%}')} "
                         f"| {_f(diff, '{:.1e}')} |")
    if rep["encoder"]["nonstrict"]:
        lines += ["", "Refused by strict placement, so run with ONNX Runtime's CPU fallback (some nodes "
                  "on the CPU): " + ", ".join(LABELS[b] for b in rep["encoder"]["nonstrict"]) + "."]
    if rep["butd"]:
        lines += ["", "Bottom-up-attention detector (random full-size weights, 300 proposals), images/s:", "",
                  "| form | image | detector input | images/s | detector ms | note |", "|---|---|---|---:|---:|---|"]
        for form, e in rep["butd"].items():
            if not e["images"]:
                lines.append(f"| {form} | — | — | — | — | {e.get('error', '')} |")
            for name, v in e["images"].items():
                lines.append(f"| {form} | {name} | {v.get('input') or '—'} | {_f(v.get('images_per_s'), '{:.3f}')} "
                             f"| {_f(v.get('detector-ms'), '{:,.1f}')} | |")
    if rep["agreement"]:
        lines += ["", "The default model's exports against fp32 on every retrieval pair of the split:", "",
                  "| export | split | pairs | same decision | largest logit diff | 99.9th pct | pairs/s | fp32 pairs/s |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for p, a in rep["agreement"].items():
            lines.append(f"| {p} | {a['split']} | {_f(a.get('pairs'))} | {_f(a.get('same_decision'), '{:.3%}')} "
                         f"| {_f(a.get('max_logit_diff'), '{:.2e}')} | {_f(a.get('p999_logit_diff'), '{:.2e}')} "
                         f"| {_f(a.get('pairs_per_second'))} | {_f(a.get('reference_pairs_per_second'))} |")
    for bundle, p in rep["profiles"].items():
        lines += ["", f"ONNX Runtime's profile of {LABELS.get(bundle, bundle)} (graph only, {p['runs']} runs): "
                  f"{p['ms_per_run']:.2f} ms a run, {p['kernel_ms_per_run']:.2f} ms of it in kernels; "
                  f"{p['memcpy_per_run']:g} Memcpy nodes a run.", "",
                  "| operator | ms per run | share of kernel time |", "|---|---:|---:|"]
        lines += [f"| {op} | {ms:.3f} | {share:.1%} |" for op, ms, share in p["top"]]
    lines += ["", "| goal | measured | met |", "|---|---|---|"]
    for g in rep["goals"]:
        lines.append(f"| {g['goal']} | {g['measured']} | "
                     f"{'not measured' if g['met'] is None else 'yes' if g['met'] else 'no'} |")
    if rep["skipped"]:
        lines += ["", "Skipped (out of the call's time): " + ", ".join(rep["skipped"])]
    return "\n".join(lines) + "\n"


def report(logs: str) -> dict:
    enc, torch_, butd, agree = read_encoder(logs), read_torch(logs), read_butd(logs), read_agreement(logs)
    profiles = read_profiles(logs)
    machine = ""
    if os.path.exists(os.path.join(logs, "machine.txt")):
        machine = "; ".join(l.strip() for l in open(os.path.join(logs, "machine.txt")) if l.strip()
                            and not l.startswith("name,"))
    skipped = []
    if os.path.exists(os.path.join(logs, "skipped.txt")):
        skipped = [l.strip() for l in open(os.path.join(logs, "skipped.txt")) if l.strip()]
    return {"machine": machine, "encoder": enc, "torch": torch_, "butd": butd, "agreement": agree,
            "profiles": profiles, "goals": goals(enc, torch_, butd, agree, profiles), "skipped": skipped}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m uniter.gpu_report", description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", help="the step logs of scripts/device/gpu-bench.sh")
    ap.add_argument("--md", help="write the Markdown report here (also printed)")
    ap.add_argument("--json", help="write the figures and goals here")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.logs):
        sys.exit(f"uniter.gpu_report: {args.logs} is not a folder")
    rep = report(args.logs)
    md = markdown(rep)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1, default=str)
            f.write("\n")


if __name__ == "__main__":
    main()
