"""uniter.gpu_report: the figures and goals read from gpu-bench.sh's step logs (in the formats
the Go benchmarks, `uniter.bench torch` and `uniter eval --reference` write them)."""
import json
import math

import pytest

from uniter import gpu_report as R


def bench_line(name, batch, rate, extra=""):
    return (f"Benchmark{name}/batch={batch}-16         \t     100\t  12345678 ns/op\t{extra}"
            f"        {rate} pairs/s\t 5229268 B/op\t     112 allocs/op\n")


def write_bench(d, bundle, rnd, rates, ot=None):
    head = "onnxruntime: 1.29.0\nbundle: uniter-base-random (hidden 768, 12 layers, feature dim 2048)\n"
    body = ""
    for (name, batch), rate in rates.items():
        extra = f"         {ot} ot-max-diff\t" if ot is not None and name == "EncoderGraphOnly" else ""
        body += bench_line(name, batch, rate, extra)
    (d / f"bench-{bundle}-{rnd}.txt").write_text(head + "goos: linux\n" + body + "PASS\n")


def butd_lines(images):
    out = "butd-bundle: butd-bench (bottom-up-attention ...), split, proposals in Go, detector on cuda\n"
    for name, (inp, rate) in images.items():
        out += f"butd-image: {name} {name} JPEG, 115425 bytes -> detector input {inp}, 300 proposals, 10 regions\n"
        out += (f"BenchmarkBUTDDetector/image={name}-16         \t       3\t4686014053 ns/op\t         6.4 decode-ms"
                f"\t      41.5 detector-ms\t         {rate} images/s\t       300.0 proposals\t        10.00 regions\n")
    return out + "PASS\n"


@pytest.fixture
def logs(tmp_path):
    write_bench(tmp_path, "base", 1, {("EncoderGraphOnly", 128): 2100, ("Encoder", 128): 1500, ("EncoderGraphOnly", 32): 1900})
    write_bench(tmp_path, "base", 2, {("EncoderGraphOnly", 128): 2200, ("Encoder", 128): 1400})
    write_bench(tmp_path, "base-fp16", 1, {("EncoderGraphOnly", 128): 12000, ("Encoder", 128): 3000})
    write_bench(tmp_path, "base-fp16-ot", 1, {("EncoderGraphOnly", 128): 11500, ("Encoder", 128): 11000}, ot=3e-7)
    write_bench(tmp_path, "base-ot", 1, {("EncoderGraphOnly", 128): 2000, ("Encoder", 128): 1980}, ot=1e-7)
    (tmp_path / "torch-fp32.json").write_text(json.dumps({"32": 2900.0, "128": 3500.0}))
    (tmp_path / "torch-autocast.json").write_text(json.dumps({"32": 7000.0, "128": 10000.0}))
    (tmp_path / "butd-split-cuda.txt").write_text(butd_lines({"480x800": ("600x1000", 4.2), "640x480": ("800x600", 4.4)}))
    (tmp_path / "butd-split-cpu.txt").write_text(butd_lines({"480x800": ("600x1000", 0.35)}))
    (tmp_path / "butd-one-cuda.txt").write_text(
        "--- FAIL: BenchmarkBUTDDetector\n    butd_bench_test.go:53: loading detector: [ONNXRuntimeError] : 1 : FAIL : "
        "This session contains graph nodes that are assigned to the default CPU EP, but fallback to CPU EP has "
        "been explicitly disabled by the user.\nFAIL\n")
    (tmp_path / "agreement-fp16-test-1k.json").write_text(json.dumps(
        {"itm_accuracy": 0.97, "agreement": {"pairs": 5_000_000, "same_decision": 0.9995,
                                             "max_logit_diff": 0.02, "p999_logit_diff": 0.008}}))
    (tmp_path / "machine.txt").write_text("16\nname, driver_version, memory.total [MiB]\nNVIDIA H100 80GB HBM3, 580.1, 81559 MiB\n")
    return tmp_path


def test_figures_are_the_best_round(logs):
    rep = R.report(str(logs))
    rates = rep["encoder"]["pairs_per_s"]
    assert rates["base"]["EncoderGraphOnly"][128] == [2100, 2200]
    assert rates["base"]["EncoderGraphOnly"][32] == [1900]
    assert rep["encoder"]["ot_max_diff"] == {"base-fp16-ot": 3e-7, "base-ot": 1e-7}
    assert rep["butd"]["split-cuda"]["images"]["480x800"] == {
        "input": "600x1000", "images_per_s": 4.2, "detector-ms": 41.5, "proposals": 300, "regions": 10}
    assert rep["machine"] == "16; NVIDIA H100 80GB HBM3, 580.1, 81559 MiB"


def test_goals(logs):
    got = {g["goal"]: g for g in R.report(str(logs))["goals"]}
    enc = got["encoder ≥ 3× PyTorch eager fp32 (batch 128)"]
    assert enc["value"] == pytest.approx(12000 / 3500) and enc["met"] and "fp16" in enc["measured"]
    auto = got["encoder ≥ 1.3× PyTorch fp16 autocast (batch 128)"]
    assert auto["value"] == pytest.approx(1.2) and auto["met"] is False
    # Match with the graph's transport against the encoder alone at the same precision.
    match = got["Match ≥ 90% of graph-only (batch 128)"]
    assert match["value"] == pytest.approx(11000 / 12000) and match["met"]
    assert got["Match ≥ 15,000 pairs/s (batch 128)"]["value"] == 11000
    assert got["Match ≥ 15,000 pairs/s (batch 128)"]["met"] is False
    assert got["graph transport within 1e-5 of heads.Align"]["met"]
    det = got["detector on CUDA ≥ 10× its CPU images/s (600×1000)"]
    assert det["value"] == pytest.approx(12.0) and det["met"]
    assert got["one-graph detector refused on CUDA at load (no crash)"]["met"] is True
    assert got["fp16: same ITM decision on ≥ 99.9% of test-1k pairs"]["met"]
    assert got["fp16: logits within 1e-2 of fp32"]["met"] is False


def test_missing_inputs_are_not_measured(tmp_path):
    goals = R.report(str(tmp_path))["goals"]
    assert goals and all(g["met"] is None and g["measured"] == "not measured" for g in goals)
    assert "not measured" in R.markdown(R.report(str(tmp_path)))


def test_a_crash_is_not_a_refusal(logs):
    (logs / "butd-one-cuda.txt").write_text("SIGSEGV: segmentation violation\nPC=0x7f0 m=0 sigcode=1\n")
    got = {g["goal"]: g for g in R.report(str(logs))["goals"]}
    g = got["one-graph detector refused on CUDA at load (no crash)"]
    assert g["met"] is False and g["measured"].startswith("SIGSEGV")


def test_markdown_and_cli(logs, tmp_path, capsys):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    R.main([str(logs), "--md", str(md), "--json", str(js)])
    text = md.read_text()
    assert "| 128 | 2,200 | 12,000 | 3,500 | 10,000 | 3.43× | 1.20× |" in text
    assert "| fp16 (fused), transport in the graph | 128 | 11,000 | 11,500 | 96% | 3.0e-07 |" in text
    assert "| fp32 | 32 | — | 1,900 | — | — |" in text
    assert "| split-cuda | 480x800 | 600x1000 | 4.200 | 41.5 | |" in text
    assert "| fp16 | test-1k | 5,000,000 | 99.950% | 2.00e-02 | 8.00e-03 |" in text
    assert "| Match ≥ 15,000 pairs/s (batch 128) | 11,000 pairs/s | no |" in text
    assert json.loads(js.read_text())["goals"][0]["met"] is True
    assert text in capsys.readouterr().out
    with pytest.raises(SystemExit):
        R.main([str(tmp_path / "missing")])


def test_other_splits_and_nonstrict_runs_are_named(logs):
    (logs / "agreement-fp16-test-1k.json").rename(logs / "agreement-fp16-test-100.json")
    (logs / "bench-base-fp16-1.txt").rename(logs / "bench-base-fp16-1-nonstrict.txt")
    rep = R.report(str(logs))
    got = {g["goal"]: g for g in rep["goals"]}
    # The fp16 goals are about test-1k: a test-100 agreement is shown, not counted.
    assert got["fp16: same ITM decision on ≥ 99.9% of test-1k pairs"]["met"] is None
    assert rep["agreement"]["fp16"]["split"] == "test-100"
    assert rep["encoder"]["nonstrict"] == ["base-fp16"]
    assert "CPU fallback (some nodes on the CPU): fp16 (fused)." in R.markdown(rep)


def test_profiles_sum_the_files_and_count_memcpy_nodes(tmp_path):
    # `uniter profile-summary --json` of two files: a stream of two objects (times in ns).
    def obj(runs, ops):
        return {"file": "x.json", "profile": {"runs": runs, "total": runs * 2_000_000,
                                             "ops": [{"op": o, "calls": c, "time_ns": t} for o, c, t in ops]}}
    stream = json.dumps(obj(4, [("MatMul", 40, 4_000_000), ("MemcpyFromHost", 8, 400_000)]), indent=2) + "\n" + \
        json.dumps(obj(6, [("MatMul", 60, 6_000_000), ("Attention", 60, 2_000_000)]), indent=2) + "\n"
    (tmp_path / "profile-base-fp16-ot.json").write_text(stream)
    rep = R.report(str(tmp_path))
    p = rep["profiles"]["base-fp16-ot"]
    assert p["runs"] == 10 and p["ms_per_run"] == pytest.approx(2.0)
    assert p["memcpy_per_run"] == pytest.approx(0.8)
    assert p["top"][0] == ("MatMul", pytest.approx(1.0), pytest.approx(10 / 12.4))
    g = {x["goal"]: x for x in rep["goals"]}["no host round trip inside the graph (fp16 (fused), transport in the graph: Memcpy nodes per run)"]
    assert g["met"] is False and g["measured"] == "0.8"
    assert "0.8 Memcpy nodes a run" in R.markdown(rep)
