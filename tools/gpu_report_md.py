"""The GPU section of docs/benchmarks.md from one tools/gpu_check.sh report.

    python tools/gpu_report_md.py bench/results/gpu-YYYY-MM-DD.json > /tmp/gpu.md

Prints markdown: the machine line (GPU, driver, CuPy, PyTorch, commit), the test counts, and a
table per suite part with the peer beside each figure. A part that failed or was skipped prints
its error instead of numbers, so a partial run still reads truthfully. The prose around the
tables (why a number is what it is) is written by hand.
"""

from __future__ import annotations

import json
import sys


def _f(v, nd=2, unit=""):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:.{nd}f}{unit}"
    return str(v)


def _x(v):
    return "-" if v is None else f"{v:.3f}x"


def _err(part):
    """The reason a part has no numbers, or None."""
    if not isinstance(part, dict):
        return "not run"
    if part.get("skipped"):
        return f"skipped: {part['skipped']}"
    if part.get("error"):
        return f"error: {part['error'].splitlines()[0][:200]}"
    if part.get("returncode") not in (0, None):
        return f"exit {part.get('returncode')}"
    return None


def machine(r) -> list[str]:
    d, v = r.get("device", {}), r.get("versions", {})
    return [f"Machine: {d.get('name') or '?'} ({d.get('memory_total') or '?'}), driver "
            f"{d.get('driver') or '?'}, CuPy {v.get('cupy', '?')}, PyTorch {v.get('torch', '?')}, "
            f"NumPy {v.get('numpy', '?')}; commit {str(r.get('commit', '?'))[:12]}, "
            f"{r.get('date', '?')}.", ""]


def tests(r) -> list[str]:
    t = r.get("tests", {})
    counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(t.get("counts", {}).items()))
    out = [f"GPU tests (`-m gpu`): {counts or 'none recorded'} in {t.get('seconds', '?')} s"
           + (" (the test stage hit its time limit)" if t.get("timed_out") else "") + "."]
    for name in t.get("failed", [])[:30]:
        out.append(f"- FAILED `{name}`: {t.get('failure_reasons', {}).get(name, '')[:200]}")
    return out + [""]


def _table(head, rows) -> list[str]:
    """A markdown table (rows shorter than the head are padded) and a blank line."""
    pad = [list(r) + [""] * (len(head) - len(r)) for r in rows]
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in pad] + [""])


def mlp(p) -> list[str]:
    rows = []
    for key, label in (("mlp_fp32", "MLP step, fp32"), ("mlp_tf32", "MLP step, TF32"),
                       ("amp_bf16", "MLP step, bf16 AMP")):
        part = p.get(key)
        why = _err(part)
        rows.append([label, why] if why else [
            label, f"{_f(part.get('autograd_gpu_ms'))} ms", f"{_f(part.get('torch_ms'))} ms",
            f"{_f(part.get('cupy_handwritten_ms'))} ms", _x(part.get("ratio_vs_torch"))])
    return _table(["Benchmark", "autograd_gpu", "PyTorch", "CuPy by hand", "Ratio to PyTorch"],
                  rows)


def chain(p) -> list[str]:
    c = p.get("chain")
    why = _err(c)
    if why:
        return [f"1,000-op chain: {why}", ""]
    rows = [["eager, small-array kernels on", _f(c.get("autograd_gpu_eager_us_per_op")),
             _f(c.get("torch_eager_us_per_op")), _x(c.get("eager_ratio_vs_torch"))],
            ["eager, small-array kernels off",
             _f(c.get("autograd_gpu_eager_us_per_op_without_small_kernels"))],
            ["`ag.cuda.graphed`", _f(c.get("autograd_gpu_graph_us_per_op")),
             _f(c.get("torch_graph_us_per_op")), _x(c.get("graph_ratio_vs_torch"))]]
    launches = ", ".join(f"{k[10:]} {_f(v)}" for k, v in c.items() if k.startswith("launch_us_"))
    return _table(["1,000-op chain, fwd + bwd", "us/op", "PyTorch us/op", "Ratio"], rows) + [
        f"Where the eager time goes: host time {_f(c.get('host_us_per_op'))} us/op, the same "
        f"chain on the NumPy backend {_f(c.get('numpy_backend_us_per_op'))} us/op, "
        f"{_f(c.get('kernel_launches_per_op'))} kernel launches per op "
        f"({_f(c.get('gpu_work_items_per_op'))} GPU work items); small.cu gradients equal "
        f"CuPy's bit for bit: {_f(c.get('small_path_grad_bitwise_equal'))}. Host time of one "
        f"launch (us): {launches}.", ""]


def checkpoint(p) -> list[str]:
    k = p.get("checkpoint")
    why = _err(k)
    if why and not (isinstance(k, dict) and k.get("autograd_gpu")):
        return [f"Checkpointing: {why}", ""]
    shape = k.get("shape", {})
    rows = []
    for side in ("autograd_gpu", "torch"):
        for r in k.get(side, []):
            name = r["name"] if side == "autograd_gpu" else f"PyTorch {r['name']}"
            rows.append([name, f"error: {r['error'][:120]}"] if "error" in r else [
                name, _f(r.get("saved_pct"), 0, "%"), _f(r.get("overhead_pct"), 0, "%"),
                _f(r.get("replayed_ops"), 0), _f(r.get("grads_equal"))])
    return [f"Checkpointing, {shape.get('layers', '?')} tanh layers, batch {shape.get('batch')}, "
            f"width {shape.get('width')}, peak(2B) - peak(B):", ""] + _table(
        ["Strategy", "saved", "time", "replays", "grads equal NONE"], rows)


def kernels(p) -> list[str]:
    kk = p.get("kernels")
    why = _err(kk)
    if why:
        return [f"Fused kernels: {why}", ""]
    rows = [[name[:-len("_fused_ms")], _f(kk[name]),
             _f(kk.get(name[:-len("_fused_ms")] + "_xp_ms")),
             _f(kk.get(name[:-len("_fused_ms")] + "_torch_ms"))]
            for name in kk if name.endswith("_fused_ms")]
    return _table(["Kernel, fwd + bwd", "fused ms", "xp path ms", "PyTorch ms"], rows)


def distributed(p) -> list[str]:
    d = p.get("distributed")
    why = _err(d)
    if why:
        return [f"Data-parallel: {why}", ""]
    m = d.get("mpi_staged") if isinstance(d.get("mpi_staged"), dict) else {}
    return [f"Data-parallel, NCCL world of one: DataParallel step {_f(d.get('nccl_dp_step_ms'))} "
            f"ms against the plain step {_f(d.get('plain_step_ms'))} ms "
            f"({_x(d.get('nccl_dp_overhead'))}) and PyTorch DDP "
            f"{_f(d.get('torch_ddp_nccl_step_ms'))} ms ({_x(d.get('ratio_vs_torch_ddp'))}); "
            "gradients equal the tape's bit for bit: "
            f"{_f(d.get('nccl_dp_grads_bitwise_equal_tape'))}; collectives equal: "
            f"{d.get('nccl_collectives_equal')}. MPI staged through the host, two ranks on the "
            f"GPU: {_f(m.get('dp_step_ms'))} ms per step against {_f(m.get('local_step_ms'))} ms "
            f"alone, gradient error against the average {_f(m.get('grad_rel_error_vs_average'), 8)}"
            + ("" if m else f" ({d.get('mpi_staged', 'not run')})") + ".", ""]


def per_sample(p) -> list[str]:
    v = p.get("per_sample_grads")
    why = _err(v)
    if why:
        return [f"Per-sample gradients: {why}", ""]
    return [f"Per-sample gradients (vmap of grad), batch {v.get('shape', {}).get('batch', '?')}: "
            f"{_f(v.get('autograd_gpu_ms'))} ms, torch.func {_f(v.get('torch_ms'))} ms "
            f"({_x(v.get('ratio_vs_torch'))}, target <= 1.1x), CuPy by hand "
            f"{_f(v.get('cupy_handwritten_ms'))} ms; the three agree: torch "
            f"{_f(v.get('agrees_with_torch'))}, CuPy {_f(v.get('agrees_with_cupy'))}.", ""]


def render(report) -> str:
    parts = report.get("bench", {}).get("results", {}).get("parts", {})
    lines = machine(report) + tests(report)
    for section in (mlp, chain, checkpoint, kernels, distributed, per_sample):
        lines += section(parts)
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(render(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
