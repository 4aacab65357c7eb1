"""Training and inference throughput, peak memory and FLOP utilisation of vit_hf against timm and transformers.

The three implementations get the same architecture and the same weights (see `benchmarks/peers.py`; their logits
are checked equal before anything is timed) and are measured interleaved in one process: each repeat times a few
steps of every implementation in turn, so a slow moment of a shared machine hits all of them alike, and the median
over repeats is reported. A training step is forward, cross-entropy, backward and a fused AdamW step; an inference
step is a forward under `torch.inference_mode`.

    python -m benchmarks.model_throughput                      # CPU: ViT-S/16 at 224, batch 8, eager
    python -m benchmarks.model_throughput --modes eager compile --output results.md
    python -m benchmarks.model_throughput --device cuda        # ViT-B/16 224 and 384, R50+ViT-B/16 384, ViT-L/16 224
"""

import argparse
import contextlib
import datetime
import functools
import itertools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
import transformers
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from benchmarks.peers import ModelSpec, build_peers, exact_float32, get_spec, logits_of
from vit_hf.files import write_text_atomic

PRECISIONS = ("fp32", "bf16")
MODES = ("eager", "compile")
TASKS = ("train", "infer")
IMPLEMENTATIONS = ("vit_hf", "timm", "transformers")
CPU_MODELS = {"vit_small_patch16_224": 8}
# Batch sizes that keep an 80 GB GPU busy without running out of memory in float32 eager training.
CUDA_MODELS = {
    "vit_base_patch16_224": 128,
    "vit_base_patch16_384": 32,
    "vit_base_r50_s16_384": 32,
    "vit_large_patch16_224": 64,
}
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched against the device name in order.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM (HBM3)
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


@dataclass
class Result:
    model: str
    implementation: str
    task: str
    precision: str
    mode: str
    batch_size: int
    images_per_s: float  # median over repeats
    repeats_images_per_s: list[float]
    peak_memory_mib: float  # resident state (weights, optimizer state) + the step's own peak allocation
    first_step_s: float  # the first call: includes compilation in compile mode
    forward_gflops_per_image: float
    achieved_tflops: float
    mfu: float | None  # achieved / peak; None when the device's peak is unknown


def default_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def forward_flops_per_image(model: nn.Module, spec: ModelSpec, device: torch.device) -> float:
    """Forward FLOPs for one image, counted by torch's FlopCounterMode (matmuls, convolutions, attention)."""

    # The counter knows the CUDA attention kernels but not the CPU one; count it with the same formula.
    def cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops}
    pixels = torch.randn(1, 3, spec.image_size, spec.image_size, device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        logits_of(model, pixels)
    model.train(was_training)
    return float(counter.get_total_flops())


def make_step(
    task: str, model: Callable, optimizer: torch.optim.Optimizer, pixels: torch.Tensor, labels: torch.Tensor, amp
) -> Callable[[], None]:
    if task == "train":

        def step() -> None:
            with amp():
                loss = F.cross_entropy(logits_of(model, pixels), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    else:

        def step() -> None:
            with torch.inference_mode(), amp():
                logits_of(model, pixels)

    return step


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    if optimizer is not None:
        tensors += [value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value)]
    return sum(t.numel() * t.element_size() for t in tensors)


def step_peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak memory allocated by one step above what was allocated before it. CUDA: the caching allocator's
    statistics. CPU (which keeps none): the allocator's running total recorded by the profiler."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    allocations = []
    nodes = list(profiler.profiler.kineto_results.experimental_event_tree())
    while nodes:
        node = nodes.pop()
        if node.tag == torch._C._profiler._EventType.Allocation:
            allocations.append((node.start_time_ns, node.extra_fields.total_allocated, node.extra_fields.alloc_size))
        nodes.extend(node.children)
    if not allocations:
        return 0
    allocations.sort()
    before = allocations[0][1] - allocations[0][2]  # the running total just before the first allocation
    return max(total for _, total, _ in allocations) - before


def write_profile(step: Callable[[], None], device: torch.device, path: Path) -> None:
    """torch.profiler's operator table for one step, sorted by own time (the question is where the time goes)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, record_shapes=True) as profiler:
        step()
        synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = profiler.key_averages().table(sort_by=sort_by, row_limit=40, max_name_column_width=60)
    write_text_atomic(path, table + "\n")


def time_interleaved(
    steps: dict[str, Callable[[], None]], steps_per_repeat: int, repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per step for each implementation and repeat; the order rotates so none always runs first."""
    names = list(steps)
    seconds = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps_per_repeat):
                steps[name]()
            synchronize(device)
            seconds[name].append((time.perf_counter() - start) / steps_per_repeat)
    return seconds


@dataclass
class Settings:
    device: torch.device
    implementations: list[str]
    precisions: list[str]
    modes: list[str]
    tasks: list[str]
    warmup: int
    steps_per_repeat: int
    repeats: int
    peak_tflops: float | None
    profile_dir: Path | None = None  # where to write one profiled step per row and implementation


class PeerBench:
    """The implementations of one model on the device, with their optimizers, compiled versions and one batch."""

    def __init__(self, spec: ModelSpec, batch_size: int, settings: Settings):
        self.spec, self.batch_size, self.settings = spec, batch_size, settings
        device = settings.device
        torch._dynamo.reset()  # graphs compiled for the previous model would count against the recompile limit
        with device:  # initialise the weights where they will live (much faster on a GPU than on its host)
            models = build_peers(spec)
        check_same_logits(models, spec, device)
        models = {name: model for name, model in models.items() if name in settings.implementations}
        self.models = models
        self.flops = forward_flops_per_image(self.models["vit_hf"], spec, device)
        # Fused AdamW: one kernel per parameter; on CPU too, where it measured 2.7x faster than foreach.
        self.optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for name, m in models.items()}
        self.compiled = {name: torch.compile(model, dynamic=False) for name, model in self.models.items()}
        generator = torch.Generator(device=device).manual_seed(0)
        self.pixels = torch.randn(batch_size, 3, spec.image_size, spec.image_size, device=device, generator=generator)
        self.labels = torch.randint(0, 1000, (batch_size,), device=device, generator=generator)

    def run(self, task: str, precision: str, mode: str) -> list[Result]:
        device, settings = self.settings.device, self.settings
        callables = self.compiled if mode == "compile" else self.models
        amp = functools.partial(autocast, device, precision)
        steps = {}
        for name, model in self.models.items():
            model.train(task == "train")
            steps[name] = make_step(task, callables[name], self.optimizers[name], self.pixels, self.labels, amp)
        first_step_s = {}
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            first_step_s[name] = time.perf_counter() - start
            for _ in range(settings.warmup):
                step()
        seconds = time_interleaved(steps, settings.steps_per_repeat, settings.repeats, device)
        results = []
        for name, step in steps.items():
            resident = state_bytes(self.models[name], self.optimizers[name] if task == "train" else None)
            peak = resident + step_peak_bytes(step, device)
            if settings.profile_dir:
                row = f"{self.spec.timm_name}_{task}_{precision}_{mode}_{name}"
                write_profile(step, device, settings.profile_dir / f"{row}.txt")
            images_per_s = [self.batch_size / s for s in seconds[name]]
            median = statistics.median(images_per_s)
            achieved = median * self.flops * (3 if task == "train" else 1) / 1e12  # backward ~ 2x forward
            results.append(
                Result(
                    model=self.spec.timm_name,
                    implementation=name,
                    task=task,
                    precision=precision,
                    mode=mode,
                    batch_size=self.batch_size,
                    images_per_s=median,
                    repeats_images_per_s=images_per_s,
                    peak_memory_mib=peak / 2**20,
                    first_step_s=first_step_s[name],
                    forward_gflops_per_image=self.flops / 1e9,
                    achieved_tflops=achieved,
                    mfu=achieved / settings.peak_tflops if settings.peak_tflops else None,
                )
            )
        return results


def check_same_logits(models: dict[str, nn.Module], spec: ModelSpec, device: torch.device) -> None:
    """Refuse to compare models that do not compute the same function."""
    pixels = torch.randn(2, 3, spec.image_size, spec.image_size, device=device)
    with torch.no_grad(), exact_float32():
        reference = logits_of(models["timm"].eval(), pixels)
        for name, model in models.items():
            difference = (logits_of(model.eval(), pixels) - reference).abs().max().item()
            if difference > 1e-4:
                raise RuntimeError(
                    f"{name} differs from timm by {difference:.2e} on {spec.timm_name}; the weight mapping in "
                    "benchmarks/peers.py is wrong, so the comparison would be meaningless."
                )


def markdown_table(results: list[Result]) -> str:
    """One row per model, task, precision and mode: absolute images/s, vit_hf / peer ratios, vit_hf's FLOP
    rate and utilisation, peak memory of each, and the spread of the repeats (noise)."""
    rows = {}
    for result in results:
        key = (result.model, result.batch_size, result.task, result.precision, result.mode)
        rows.setdefault(key, {})[result.implementation] = result
    columns = ["model", "batch", "task", "precision", "mode"]
    columns += [f"{name} img/s" for name in IMPLEMENTATIONS]
    columns += [f"vit_hf/{name}" for name in IMPLEMENTATIONS[1:]]
    columns += ["vit_hf TFLOP/s", "vit_hf MFU", "peak MiB " + " / ".join(IMPLEMENTATIONS), "first step s", "spread"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for key, by_name in rows.items():
        ours = by_name["vit_hf"]
        present = [by_name.get(name) for name in IMPLEMENTATIONS]
        cells = [str(value) for value in key]
        cells += [f"{r.images_per_s:.1f}" if r else "–" for r in present]
        cells += [f"{ours.images_per_s / r.images_per_s:.2f}" if r else "–" for r in present[1:]]
        cells.append(f"{ours.achieved_tflops:.2f}")
        cells.append(f"{100 * ours.mfu:.1f}%" if ours.mfu is not None else "–")
        cells.append(" / ".join(f"{r.peak_memory_mib:.0f}" if r else "–" for r in present))
        cells.append(f"{ours.first_step_s:.1f}")
        # The largest (max - min) / median over the implementations' repeats: how far to trust the ratios.
        spreads = [(max(r.repeats_images_per_s) - min(r.repeats_images_per_s)) / r.images_per_s for r in present if r]
        cells.append(f"{100 * max(spreads):.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--models", nargs="+", help="timm names (default: ViT-S/16 on CPU, four models on CUDA)")
    parser.add_argument("--batch-size", type=int, help="images per step for every model (default: per model)")
    parser.add_argument("--implementations", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--modes", nargs="+", choices=MODES, help="default: eager on CPU, eager and compile on CUDA")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    parser.add_argument("--steps", type=int, help="steps per timed repeat (default: 2 on CPU, 10 on CUDA)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: all); 1 is steadier on a machine others load"
    )
    parser.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: bf16 dense peak by name)")
    parser.add_argument("--profile", type=Path, help="write a torch.profiler table of one step of each row here")
    parser.add_argument("--output", action="append", default=[], type=Path, help="write the table (.md) or .json")
    args = parser.parse_args(argv)
    for path in args.output:
        if path.suffix not in (".md", ".json"):
            parser.error(f"--output {path}: use a .md (table) or .json (all figures) file name.")
    counts = {
        "--batch-size": args.batch_size,
        "--steps": args.steps,
        "--repeats": args.repeats,
        "--threads": args.threads,
    }
    for name, value in counts.items():
        if value is not None and value < 1:
            parser.error(f"{name} must be at least 1, got {value}.")
    if "vit_hf" not in args.implementations:
        parser.error("--implementations must include vit_hf: the ratios compare it with its peers.")
    if args.warmup < 0:
        parser.error(f"--warmup must be at least 0, got {args.warmup}.")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch. Run on a GPU machine or use --device cpu.")
    if args.threads:
        torch.set_num_threads(args.threads)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True  # the patch and ResNet convolutions pick their fastest algorithm
    default_batch_sizes = CUDA_MODELS if on_cuda else CPU_MODELS
    try:
        specs = [get_spec(name) for name in args.models or default_batch_sizes]
    except ValueError as error:
        raise SystemExit(str(error)) from None
    settings = Settings(
        device=device,
        implementations=args.implementations,
        precisions=args.precisions,
        modes=args.modes or (list(MODES) if on_cuda else ["eager"]),
        tasks=args.tasks,
        warmup=args.warmup,
        steps_per_repeat=args.steps or (10 if on_cuda else 2),
        repeats=args.repeats,
        peak_tflops=args.peak_tflops or default_peak_tflops(device),
        profile_dir=args.profile,
    )
    results = []
    for spec in specs:
        batch_size = args.batch_size or default_batch_sizes.get(spec.timm_name, 32 if on_cuda else 8)
        bench = PeerBench(spec, batch_size, settings)
        for mode, precision, task in itertools.product(settings.modes, settings.precisions, settings.tasks):
            log(f"{spec.timm_name} batch {batch_size}: {task} {precision} {mode}")
            results += bench.run(task, precision, mode)
    header = {
        "date": datetime.date.today().isoformat(),
        "device": device_name(device),
        "peak_tflops": settings.peak_tflops,
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "transformers": transformers.__version__},
        "command": "python -m benchmarks.model_throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"warmup": settings.warmup, "steps_per_repeat": settings.steps_per_repeat, "repeats": args.repeats},
    }
    table = markdown_table(results)
    print(f"{header['date']} | {header['device']} | torch {torch.__version__} | peak TFLOP/s {settings.peak_tflops}")
    print(table)
    for path in args.output:
        if path.suffix == ".json":
            write_text_atomic(path, json.dumps({**header, "results": [asdict(r) for r in results]}, indent=2) + "\n")
        else:
            intro = "\n".join(f"- {key}: {value}" for key, value in header.items())
            write_text_atomic(path, f"{intro}\n\n{table}\n")
    return results


if __name__ == "__main__":
    main()
