"""The PyTorch peer's BLAS in `make bench` (models/uniter/bench.py: blas-probe, torch
--openblas-coretype): which OpenBLAS core types the CPU's flags allow, the correctness check of
the float32 products against the float64 reference, the choice of the fastest correct core
type, and the probe subprocess (crashes and wrong results exclude a candidate; one real probe
of OpenBLAS's own choice).
"""
import argparse
import json
import os
import sys

import numpy as np
import pytest
import torch

from uniter import bench as B

torch.set_num_threads(1)

SSE3 = {"fpu", "sse", "sse2", "pni", "ssse3"}
AVX2 = SSE3 | {"sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c"}
SKYLAKE_SP = AVX2 | {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
# The development machine's /proc/cpuinfo (AMD EPYC, family 26), the flags that matter here.
DEV = SKYLAKE_SP | {"avx512_bf16", "avx512_vnni", "avx512ifma", "avx512vbmi", "avx_vnni",
                    "sse4a", "abm"}
AMD_PILEDRIVER = SSE3 | {"sse4_1", "sse4_2", "avx", "fma", "fma4", "xop"}


@pytest.mark.parametrize("flags, allowed", [
    (set(), []),
    (SSE3, ["Prescott", "Core2"]),
    (AVX2, ["Prescott", "Core2", "Nehalem", "Sandybridge", "Haswell", "Zen"]),
    (SKYLAKE_SP, ["Prescott", "Core2", "Nehalem", "Sandybridge", "Haswell", "Zen", "SkylakeX"]),
    (DEV, ["Prescott", "Core2", "Nehalem", "Sandybridge", "Haswell", "Zen", "SkylakeX",
           "Cooperlake"]),
    (AMD_PILEDRIVER, ["Prescott", "Core2", "Nehalem", "Sandybridge", "Bulldozer", "Piledriver",
                      "Steamroller"]),
])
def test_candidates_follow_the_cpu_flags(flags, allowed):
    got, skipped = B.coretype_candidates(flags)
    assert got == allowed
    assert sorted(got + [n for n, _ in skipped]) == sorted(B.CORETYPE_FLAGS)
    for name, missing in skipped:  # each skip names flags the CPU really lacks
        assert missing and not set(missing) & flags, name


def test_skipped_candidates_name_the_missing_flags():
    _, skipped = B.coretype_candidates(SKYLAKE_SP)
    assert dict(skipped)["Cooperlake"] == ["avx512_bf16"]
    _, skipped = B.coretype_candidates(AVX2)
    assert dict(skipped)["SkylakeX"] == list(B.AVX512)
    _, skipped = B.coretype_candidates(DEV, names=["Haswell", "Bogus"])
    assert [n for n, _ in skipped] == ["Bogus"]


def test_cpuinfo_parsing():
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu sse2 pni avx avx2 fma avx512f\n\nprocessor\t: 1\n"
            "model name\t: AMD EPYC\nflags\t\t: fpu\n")
    assert B.cpu_model(text) == "AMD EPYC"
    assert B.cpu_flags(text) == {"fpu", "sse2", "pni", "avx", "avx2", "fma", "avx512f"}
    assert B.cpu_flags("") == set() and B.cpu_model("") == "unknown"


def test_coretype_env():
    env = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "2"}
    assert "OPENBLAS_CORETYPE" not in B.coretype_env("default", env)
    assert B.coretype_env("inherit", env)["OPENBLAS_CORETYPE"] == "Haswell"
    assert B.coretype_env("SkylakeX", env)["OPENBLAS_CORETYPE"] == "SkylakeX"
    assert B.coretype_env("default", env)["OPENBLAS_NUM_THREADS"] == "2"
    assert env["OPENBLAS_CORETYPE"] == "Haswell"  # not modified


# ---------------------------------------------------------------------------------------------
# The correctness check


def test_check_accepts_the_real_products():
    checks = B.check_gemms(batch=1)
    assert len(checks) == len(B.gemm_cases(1)) + 1
    for c in checks:
        assert c["ok"], c
        assert c["err"] < B.GEMM_TOL / 5 and c["ref_err"] < B.REF_TOL, c


def corrupt(how, case_op="matmul", case_index=None):
    """A product function: the real one, with one case's output spoiled `how`."""
    seen = []

    def product(op, a, b, bias=None):
        out = B.torch_product(op, a, b, bias).clone()
        seen.append(op)
        if (case_index is None and op == case_op) or len(seen) - 1 == case_index:
            how(out)
        return out
    return product


def one_entry_garbage(out):
    out.view(-1)[out.numel() // 2] = 1e3


def last_column_zero(out):
    out[..., -1] = 0


def bf16(out):
    out.copy_(out.to(torch.bfloat16).float())


def nan(out):
    out.view(-1)[0] = float("nan")


@pytest.mark.parametrize("how", [one_entry_garbage, last_column_zero, bf16, nan],
                         ids=lambda f: f.__name__)
def test_check_rejects_a_corrupted_product(how):
    # The FFN-in product (case 0) and the attention context (a batched matmul, case 5).
    for index in (0, 5):
        checks = B.check_gemms(batch=1, product=corrupt(how, case_index=index))
        assert [i for i, c in enumerate(checks) if not c["ok"]] == [index], (how, checks)
        assert checks[index]["err"] > B.GEMM_TOL


def test_check_accepts_float32_rounding_noise():
    def jitter(out):  # a different but valid order of summation: relative changes of ~u
        g = torch.Generator().manual_seed(3)
        out.mul_(1 + 2 ** -24 * torch.randn(out.shape, generator=g))
    checks = B.check_gemms(batch=1, product=corrupt(jitter, case_index=0))
    assert all(c["ok"] for c in checks)


def test_reference_is_checked_without_blas():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 300)), rng.standard_normal((300, 30))
    ref = a @ b
    assert B.freivalds_error(a, b, ref, rng) < 1e-13
    bad = ref.copy()
    bad[7, 3] += 1.0  # one entry of a float64 reference off by about a tenth of its scale
    assert B.freivalds_error(a, b, bad, rng, vectors=4) > B.REF_TOL
    # Batched operands, as the attention products.
    a3, b3 = rng.standard_normal((3, 5, 8)), rng.standard_normal((3, 8, 4))
    assert B.freivalds_error(a3, b3, a3 @ b3, rng) < 1e-13
    # Exactly rounded sums: equal to numpy's float64 product up to float64 rounding.
    ta, tb = torch.randn(4, 50), torch.randn(50, 3)
    exact = np.array(B.exact_product(ta, tb))
    assert B.rel_frobenius(ta.double().numpy() @ tb.double().numpy(), exact) < 1e-14


def test_rel_frobenius():
    ref = np.array([[3.0, 4.0]])
    assert B.rel_frobenius(ref, ref) == 0
    assert B.rel_frobenius([[3.0, 4.5]], ref) == pytest.approx(0.1)
    assert B.rel_frobenius([[np.inf, 4.0]], ref) == float("inf")
    assert B.rel_frobenius([[3.0]], ref) == float("inf")


# ---------------------------------------------------------------------------------------------
# The choice


def result(name, verdict, gflops):
    return {"name": name, "core": name, "verdict": verdict, "gflops": gflops}


def test_picker_takes_the_fastest_correct_one():
    results = [result("default", "ok", 95.0), result("Haswell", "ok", 96.0),
               result("SkylakeX", "ok", 128.0), result("Cooperlake", "ok", 127.0),
               result("Bogus", "wrong", 900.0), result("Bulldozer", "crashed", 999.0),
               result("SapphireRapids", "not-honoured", 500.0), result("Zen", "timeout", 300.0)]
    assert B.pick_coretype(results)["name"] == "SkylakeX"
    assert B.pick_coretype(results[::-1])["name"] == "SkylakeX"


def test_picker_never_takes_an_incorrect_one():
    assert B.pick_coretype([]) is None
    assert B.pick_coretype([result("a", "wrong", 900.0), result("b", "crashed", None),
                            result("c", "not-honoured", 50.0)]) is None
    assert B.pick_coretype([result("a", "wrong", 900.0), result("b", "ok", 1.0)])["name"] == "b"


# ---------------------------------------------------------------------------------------------
# The probe subprocess


def fake_probe(**res):
    """A command that prints a probe result as `blas-probe --one` does, without torch."""
    line = B.PROBE_MARK + json.dumps({"core": "Haswell", "correct": True, "gflops": 99.0,
                                      "max_err": 3e-7, "max_ref_err": 1e-15, "checks": [],
                                      **res})
    return [sys.executable, "-c", f"print({line!r})"]


def test_probe_of_a_crashing_candidate():
    r = B.probe_candidate("Bulldozer", command=[
        sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"])
    assert r["verdict"] == "crashed" and "SIGILL" in r["reason"] and r["gflops"] is None
    r = B.probe_candidate("Haswell", command=[
        sys.executable, "-c", "import sys; sys.exit('Illegal instruction')"])
    assert r["verdict"] == "crashed" and "exit status 1" in r["reason"]
    assert B.pick_coretype([r]) is None


def test_probe_verdicts():
    assert B.probe_candidate("Haswell", command=fake_probe())["verdict"] == "ok"
    r = B.probe_candidate("SapphireRapids", command=fake_probe(core="Cooperlake"))
    assert r["verdict"] == "not-honoured" and r["gflops"] is None and "Cooperlake" in r["reason"]
    r = B.probe_candidate("Haswell", command=fake_probe(
        correct=False, gflops=None, checks=[{"case": "FFN in", "err": 0.5, "ref_err": 1e-15,
                                             "ok": False}]))
    assert r["verdict"] == "wrong" and "FFN in" in r["reason"]
    # OpenBLAS's own choice is whatever it reports.
    assert B.probe_candidate("default", command=fake_probe(core="Zen"))["verdict"] == "ok"


def test_probe_sets_the_core_type_in_the_child_environment():
    show = [sys.executable, "-c", "import json, os; print(%r + json.dumps({'core': "
            "os.environ.get('OPENBLAS_CORETYPE', 'unset'), 'correct': True, 'gflops': 1.0}))"
            % B.PROBE_MARK]
    env = {"OPENBLAS_CORETYPE": "Haswell", "PATH": os.environ.get("PATH", "")}
    assert B.probe_candidate("SkylakeX", command=show, env=env)["core"] == "SkylakeX"
    assert B.probe_candidate("default", command=show, env=env)["core"] == "unset"
    assert B.probe_candidate("inherit", command=show, env=env)["core"] == "Haswell"


def test_real_probe_of_openblas_default():
    """One real probe: OpenBLAS's own choice, in a fresh process, small shapes."""
    r = B.probe_candidate("default", batch=1, repeats=1, timeout=120)
    assert r["verdict"] == "ok", r
    assert r["max_err"] <= B.GEMM_TOL and r["gflops"] > 0
    assert r["torch_threads"] == 1
    if r["core"] is None:
        pytest.skip(f"torch does not use OpenBLAS here (BLAS_INFO={r['torch_blas']})")
    assert r["openblas_config"].startswith("OpenBLAS") and r["openblas_threads"] >= 1


def test_torch_uses_a_saved_probe(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    path = tmp_path / "probe.json"
    args = argparse.Namespace(openblas_coretype=None, device="cpu", threads=1,
                              blas_probe=str(path))
    for chosen, want in (("SkylakeX", "SkylakeX"), ("default", None)):
        monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
        path.write_text(json.dumps({"key": B.probe_key(1, "2"), "chosen": chosen,
                                    "chosen_core": "SkylakeX"}))
        args.openblas_coretype = None
        assert B.resolve_coretype(args)["chosen"] == chosen
        assert args.openblas_coretype == "auto"
        assert os.environ.get("OPENBLAS_CORETYPE") == want
    # Named and inherited core types: no probe.
    for name, want in (("Zen", "Zen"), ("inherit", "Zen"), ("default", None)):
        args.openblas_coretype = name
        assert B.resolve_coretype(args) is None
        assert os.environ.get("OPENBLAS_CORETYPE") == want
    # On a GPU the CPU's BLAS is not what is timed: the environment stands.
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    args.openblas_coretype, args.device = None, "cuda"
    assert B.resolve_coretype(args) is None and os.environ["OPENBLAS_CORETYPE"] == "Haswell"


class _TwoOutputs(torch.nn.Module):
    """The shape of what `torch` times: (hidden, itm_logits) from the inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(64, 64)
        self.head = torch.nn.Linear(64, 2)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return h, self.head(h)


def test_autocast_runs_the_products_in_reduced_precision():
    g, x, cpu = _TwoOutputs().eval(), torch.randn(8, 64), torch.device("cpu")
    assert B.autocast_dtype("cuda") == torch.float16
    assert B.autocast_dtype("cpu") == torch.bfloat16
    with B.forward_context(cpu, False):
        h, _ = g(x)
        assert h.dtype == torch.float32 and not h.requires_grad
    with B.forward_context(cpu, True):
        h, _ = g(x)
        assert h.dtype == torch.bfloat16 and not h.requires_grad
    # bfloat16 keeps 8 bits of mantissa: the logits move, but by far less than their size.
    dev = B.autocast_deviation(g, [x], cpu)
    with torch.no_grad():
        scale = float(g(x)[1].abs().max())
    assert 0 < dev < 0.05 * scale


def test_autocast_deviation_refuses_non_finite_logits():
    g, cpu = _TwoOutputs().eval(), torch.device("cpu")
    with torch.no_grad():
        g.head.weight.fill_(3e38)  # the logits overflow
    with pytest.raises(SystemExit, match="non-finite"):
        B.autocast_deviation(g, [torch.ones(2, 64)], cpu)


def test_time_calls_counts_calls_and_pairs():
    calls, syncs = [], []
    n, elapsed, rate = B.time_calls(lambda: calls.append(1), lambda: syncs.append(1), batch=4,
                                    seconds=0.0, min_iters=3)
    assert n == 3 == len(calls) == len(syncs)
    assert rate == pytest.approx(n * 4 / elapsed)
