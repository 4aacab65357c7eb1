"""How much of timm's ViT family vit_hf converts exactly.

Every model registered in timm's `vision_transformer`, `vision_transformer_hybrid`, `eva` (EVA-02, DINOv3,
Perception Encoder, RoPE-ViT, ...) and `deit` modules, up to a parameter budget, is built with random weights
(`pretrained=False`, then randomised so no layer is an identity), converted with `vit_hf.from_timm` and run beside
timm at its native input size. A model counts as converted when the largest absolute logit difference is at most
1e-4 (float32). Models that cannot be converted are listed with the architecture features that block them. Support
is checked on the meta device first, so only convertible models are built with real weights.

    python -m benchmarks.timm_coverage                      # writes outputs/timm_coverage.md
    python -m benchmarks.timm_coverage --max-params 100e6   # a quicker partial run
    python -m benchmarks.timm_coverage --modules eva deit   # some modules only
    python -m benchmarks.timm_coverage --max-depth 2        # numbers from each model's first 2 blocks (faster)

With `--max-depth N` support is still decided on the whole model, but the numeric comparison runs a model built
with at most N blocks: a timm ViT's blocks are alike, so the comparison exercises every layer type of the model at
a fraction of the cost (the full run needs tens of minutes of an idle CPU).

It needs no network: no pretrained weights are downloaded.
"""

import argparse
import time
from collections import Counter
from pathlib import Path

import timm
import torch

from tests.timm_helpers import max_abs_diff, pixels, random_timm_model
from vit_hf import UnsupportedTimmModelError, from_timm
from vit_hf.files import write_text_atomic
from vit_hf.timm.architecture import config_from_timm

MODULES = ("vision_transformer", "vision_transformer_hybrid", "eva", "deit")
TOLERANCE = 1e-4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-params", type=float, default=450e6, help="skip larger models (default: 450M)")
    parser.add_argument("--modules", nargs="+", choices=MODULES, default=list(MODULES), help="timm modules to cover")
    # Not the tracked benchmarks/results/timm_coverage.md: refreshing that is a deliberate --out.
    parser.add_argument("--out", type=Path, default=Path("outputs/timm_coverage.md"), help="report to write")
    parser.add_argument("--max-depth", type=int, help="compare outputs of models built with at most this many blocks")
    return parser.parse_args()


def check_model(name: str, max_params: float, max_depth: int | None = None) -> dict:
    """One row of the report: parameters, status (exact / mismatch / blocked / too large), difference, features."""
    with torch.device("meta"):  # no memory, no initialisation: enough to count and to check support
        meta_model = timm.create_model(name, pretrained=False)
    row = dict(name=name, params=sum(p.numel() for p in meta_model.parameters()), features=[], diff=None)
    if row["params"] > max_params:
        return dict(row, status="too large")
    try:
        config_from_timm(meta_model)
    except UnsupportedTimmModelError as error:
        return dict(row, status="blocked", features=error.features)
    depth = len(meta_model.blocks)
    timm_model = random_timm_model(name, **({} if max_depth is None or depth <= max_depth else {"depth": max_depth}))
    model = from_timm(timm_model)
    x = pixels(timm_model.patch_embed.img_size, batch=1)
    with torch.no_grad():
        row["diff"] = max_abs_diff(model(x).logits, timm_model(x))
    return dict(row, status="exact" if row["diff"] <= TOLERANCE else "mismatch")


def feature_category(feature: str) -> str:
    """'an attention-pool head (global_pool='map', ...)' -> 'an attention-pool head'."""
    return feature.split(" (")[0].split(":")[0]


def module_table(rows: list[dict], modules: list[str]) -> list[str]:
    """Per-module counts of the models within the parameter budget."""
    lines = [
        "| timm module | models | converted exactly | blocked | mismatched | share exact |",
        "|---|---|---|---|---|---|",
    ]
    for module in [*modules, None]:
        chosen = [row for row in rows if row["status"] != "too large" and module in (None, row["module"])]
        counts = Counter(row["status"] for row in chosen)
        share = f"{100 * counts['exact'] / len(chosen):.1f}%" if chosen else "-"
        name = f"`{module}`" if module else "**all**"
        lines.append(
            f"| {name} | {len(chosen)} | {counts['exact']} | {counts['blocked']} | {counts['mismatch']} | {share} |"
        )
    return lines


def report(rows: list[dict], modules: list[str], max_params: float, seconds: float, max_depth: int | None) -> str:
    in_budget = [row for row in rows if row["status"] != "too large"]
    exact = [row for row in in_budget if row["status"] == "exact"]
    blocked = [row for row in in_budget if row["status"] == "blocked"]
    mismatched = [row for row in in_budget if row["status"] == "mismatch"]
    blocks = "" if max_depth is None else f", outputs compared on each model's first {max_depth} blocks"
    lines = [
        "# timm ViT coverage",
        "",
        f"timm {timm.__version__}, torch {torch.__version__}; modules {', '.join(modules)}; "
        f"{len(rows)} models, {len(in_budget)} with at most {max_params / 1e6:.0f}M parameters; "
        f"{seconds / 60:.1f} min.",
        "",
        f"**Converted exactly: {len(exact)} / {len(in_budget)}** (max |logit difference| <= {TOLERANCE:g}, float32, "
        f"random weights, native input size{blocks}). Mismatches: {len(mismatched)}. Blocked: {len(blocked)}.",
        "",
        *module_table(rows, modules),
        "",
        "## Blocking features",
        "",
        "| feature | models |",
        "|---|---|",
    ]
    counts = Counter(category for row in blocked for category in dict.fromkeys(map(feature_category, row["features"])))
    lines += [f"| {category} | {count} |" for category, count in counts.most_common()]
    lines += [
        "",
        "## Models",
        "",
        "| model | timm module | params (M) | status | max abs logit diff | blocked by |",
        "|---|---|---|---|---|---|",
    ]
    for row in in_budget:
        diff = "" if row["diff"] is None else f"{row['diff']:.1e}"
        blockers = "; ".join(dict.fromkeys(map(feature_category, row["features"])))
        cells = [row["name"], row["module"], f"{row['params'] / 1e6:.1f}", row["status"], diff, blockers]
        lines.append("| " + " | ".join(cells) + " |")
    too_large = [f"{row['name']} ({row['params'] / 1e6:.0f}M)" for row in rows if row["status"] == "too large"]
    lines += ["", f"Not built (over {max_params / 1e6:.0f}M parameters): {', '.join(too_large) or 'none'}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    module_of = {name: module for module in args.modules for name in timm.list_models(module=module)}
    names = sorted(module_of)
    start = time.perf_counter()
    rows = []
    for index, name in enumerate(names, 1):
        rows.append(dict(check_model(name, args.max_params, args.max_depth), module=module_of[name]))
        row = rows[-1]
        detail = f"{row['diff']:.1e}" if row["diff"] is not None else "; ".join(map(feature_category, row["features"]))
        print(f"[{index}/{len(names)}] {name}: {row['status']} {detail}", flush=True)
    text = report(rows, args.modules, args.max_params, time.perf_counter() - start, args.max_depth)
    write_text_atomic(args.out, text)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
