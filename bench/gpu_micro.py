"""Two measurements of the GPU validation that no sweep cell gives, in one process (one CUDA start):

1. The Adam step alone: `optimizer.step()` of torch.optim.Adam as for-loop, foreach and fused on
   the parameters of a real bigtrain model (GPT-2 small on a GPU: 148 tensors, 124M values), with
   gradients in place and nothing else timed -- no zero_grad, no forward or backward. This is the
   9.3 / 3.0 / 1.35 ms anchor of the H200 references.
2. The clock check on a planted fault: the same work timed by device marks (CUDA events, or
   perf_counter on the CPU) and by the host clock with a synchronize at each end -- once honestly,
   once with the work put where the marks cannot see it (a side CUDA stream; on the CPU a thread
   pool that the closing "synchronize" waits for). gpu_check.clock_agreement must pass the first
   and fail the second, or the record-level check that uses it could not catch missed work.

    python3 bench/gpu_micro.py --device cuda --json micro.json
    python3 bench/gpu_micro.py --device cpu --json micro.json     # rehearsal: transformer:tiny

Writes one JSON object: {"adam_step": {...}, "clock_fault": {...}, "torch": ..., "device": ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import gpu_check  # noqa: E402

ADAM_IMPLS = {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def adam_step_times(model_name: str, device, *, warmup: int, steps: int) -> dict:
    """Median seconds of one `Adam.step()` per implementation on `model_name`'s parameters."""
    import torch

    from bigtrain.workloads import resolve_model

    ref = resolve_model(model_name)
    workload = ref.family.build(ref.size.name, device=device)
    params = [p for p in workload.model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    out = {"model": model_name, "tensors": len(params), "values": sum(p.numel() for p in params),
           "timed": "optimizer.step() only (no zero_grad), gradients in place"}
    for impl, kwargs in ADAM_IMPLS.items():
        try:
            optimizer = torch.optim.Adam(params, lr=1e-4, **kwargs)
        except (RuntimeError, ValueError) as exc:   # e.g. fused Adam on a device without it
            out[impl] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        for _ in range(warmup):
            optimizer.step()
        _sync(device)
        times = []
        for _ in range(steps):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                optimizer.step()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                optimizer.step()
                times.append(time.perf_counter() - t0)
        out[impl] = {"median_s": statistics.median(times), "n": len(times)}
        del optimizer
    return out


def clock_fault(device, *, size: int, repeats: int) -> dict:
    """Device-mark span vs host clock (synchronize at each end) for honest and hidden work."""
    import torch

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)

    def timed(hidden: bool) -> dict:
        _sync(device)
        host_start = time.perf_counter()
        if device.type == "cuda":
            side = torch.cuda.Stream(device)
            first, last = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            first.record()
            if hidden:   # the planted fault: work the default-stream events do not bracket
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    for _ in range(repeats):
                        a @ b
            else:
                for _ in range(repeats):
                    a @ b
            last.record()
            torch.cuda.synchronize(device)
            marks_s = first.elapsed_time(last) / 1e3
        else:
            pool = ThreadPoolExecutor(max_workers=1)
            first = time.perf_counter()
            if hidden:   # the planted fault: work handed off, waited for only at the end
                futures = [pool.submit(torch.mm, a, b) for _ in range(repeats)]
            else:
                futures = []
                for _ in range(repeats):
                    torch.mm(a, b)
            last = time.perf_counter()
            for future in futures:   # the closing "synchronize"
                future.result()
            pool.shutdown()
            marks_s = last - first
        host_s = time.perf_counter() - host_start
        check = gpu_check.clock_agreement(marks_s, host_s)
        return {"marks_s": marks_s, "host_s": host_s, "ratio": marks_s / host_s if host_s else None,
                "status": check.status, "figure": check.figure}

    timed(False)   # warm the kernels up (cuBLAS handles, workspace) outside both timings
    return {"honest": timed(False), "planted": timed(True),
            "bound": f"marks / host clock in [{gpu_check.STEP_SUM_BOUNDS[0]}, {gpu_check.STEP_SUM_BOUNDS[1]}]"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    import torch

    device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
    gpu = device.type == "cuda"
    result = {"device": str(device), "torch": torch.__version__,
              "device_name": torch.cuda.get_device_name(device) if gpu else "cpu"}
    result["clock_fault"] = clock_fault(device, size=4096 if gpu else 256, repeats=40 if gpu else 20)
    args.json.write_text(json.dumps(result, indent=2) + "\n")   # keep what is done if Adam fails
    result["adam_step"] = adam_step_times("transformer:gpt2-small" if gpu else "transformer:tiny",
                                          device, warmup=5 if gpu else 2, steps=50 if gpu else 5)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
