"""The speed table of `make bench`: every speed goal of the project beside its reference, measured in one run.

    .venv/bin/python benchmarks/speed_table.py [--quick] [--no-demo] [--only metrics,search,attacks,gpu,demo]

Rows (each hashguard figure beside a reference measured in the same run, alternately where it matters; the
scripts that produce them document their methods):

* metrics (`bench_retrieval.rows`): mAP@k, mAP@all, every metric in one pass and an evaluator's repeated calls
  at NUS-WIDE size (2,100 x 193,734 x 64 bits, 21 labels), against the stable per-query argsort loop and the
  raw XOR + popcount limit;
* search (`bench_search.rows`): exact top-k against FAISS `IndexBinaryFlat` at NUS-WIDE size, 1 M and 10 M codes,
  random and clustered codes, and chunked adds;
* attacks (`bench_attacks.rows`): each optimizer's overhead over the same number of bare forward + backward
  passes, with the noise floor (the bare passes against themselves);
* gpu: where CUDA is available, the paper's mainstay attack (100 PGD steps, AlexNet, 224 px) in float32, bf16
  and bf16 + channels-last, images x steps per second (random weights and images: nothing is downloaded);
* demo: `make demo`'s study (`configs/demo.yaml`) run from scratch in a temporary directory, against the 5-minute
  goal.

Prints one Markdown table with the load average before and after. Never run as a test.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from table_text import load_text  # noqa: E402

SECTIONS = ("metrics", "search", "attacks", "gpu", "demo")
MODULES = {"metrics": "bench_retrieval", "search": "bench_search", "attacks": "bench_attacks"}
DEMO_GOAL_S = 300.0


def module_rows(section: str, quick: bool) -> list[dict]:
    """The rows a benchmark script's ``rows(quick)`` returns (one explanatory row when it has none)."""
    module = importlib.import_module(MODULES[section])
    rows = getattr(module, "rows", None)
    if rows is None:
        return [{"work": f"{section}: no rows() in {MODULES[section]}.py", "hashguard_s": None,
                 "reference_name": "-", "reference_s": None, "ratio": None}]
    return [{**row, "section": section} for row in rows(quick)]


def gpu_rows(quick: bool) -> list[dict]:
    """The paper's mainstay attack on AlexNet at 224 px: images x steps per second per precision (CUDA only)."""
    import torch

    if not torch.cuda.is_available():
        return [{"section": "gpu", "work": "mainstay attack, AlexNet 224 px, 100 steps", "hashguard_s": None,
                 "reference_name": "-", "reference_s": None, "ratio": None, "note": "no CUDA device: not measured"}]
    from hashguard.attacks import build_optimizer, mainstay_loss
    from hashguard.models.hash_model import HashModel, ModelSpec
    from hashguard.precision import use_runtime

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = HashModel(ModelSpec(backbone="alexnet", bits=64, in_channels=3, image_size=224)).to(device).eval()
    batch, steps = (32, 10) if quick else (128, 100)
    images = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    target = torch.sign(torch.randn(batch, 64, generator=torch.Generator().manual_seed(1))).to(device)
    rows, reference = [], None
    for precision, channels_last in (("float32", False), ("bf16", False), ("bf16", True)):
        with use_runtime(precision, channels_last):

            def attack(optimizer=build_optimizer("pgd", step=1 / 255)) -> float:  # noqa: ANN001
                torch.cuda.synchronize()
                start = time.perf_counter()
                optimizer.run(model, images, lambda u, x: mainstay_loss(u, target), eps=8 / 255,
                              iterations=steps, generator=torch.Generator().manual_seed(0))
                torch.cuda.synchronize()
                return time.perf_counter() - start

            attack()
            seconds = min(attack() for _ in range(3))
        reference = reference or seconds
        label = precision + (" + channels-last" if channels_last else "")
        rows.append({"section": "gpu", "work": f"mainstay attack, AlexNet 224 px, {steps} steps, {label}",
                     "hashguard_s": seconds, "reference_name": "float32", "reference_s": reference,
                     "ratio": reference / seconds,
                     "note": f"{batch * steps / seconds:,.0f} images x steps / s on {torch.cuda.get_device_name()}"})
    return rows


def demo_rows() -> list[dict]:
    """`make demo`'s study from scratch, timed, against the 5-minute goal."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hashguard", "study", str(ROOT / "configs" / "demo.yaml"),
                               "--out", str(Path(tmp) / "demo")], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
        seconds = time.perf_counter() - start
    note = "report included" if done.returncode == 0 else f"FAILED: {done.stderr.strip().splitlines()[-1:]}"
    return [{"section": "demo", "work": "make demo study (configs/demo.yaml), from scratch", "hashguard_s": seconds,
             "reference_name": "goal 5 min", "reference_s": DEMO_GOAL_S, "ratio": DEMO_GOAL_S / seconds, "note": note}]


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes where a script offers them")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo study row (about 5 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    args = parser.parse_args()
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"speed_table: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    before = load_text()
    rows: list[dict] = []
    for section in wanted:
        if section == "demo":
            if not args.no_demo:
                rows += demo_rows()
        elif section == "gpu":
            rows += gpu_rows(args.quick)
        else:
            rows += module_rows(section, args.quick)
    print(f"load average before: {before}; after: {load_text()}; {os.cpu_count()} CPUs"
          f"{'; quick sizes' if args.quick else ''}\n")
    print("| section | work | hashguard | reference | reference time | ratio (reference / hashguard) | note |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        mine, reference = row.get("hashguard_s"), row.get("reference_s")
        ratio = "-" if not mine or not reference else f"{reference / mine:.2f}x"
        print(f"| {row.get('section', '')} | {row['work']} | {seconds_text(row.get('hashguard_s'))} | "
              f"{row.get('reference_name', '-')} | {seconds_text(row.get('reference_s'))} | {ratio} | "
              f"{row.get('note', '')} |")


if __name__ == "__main__":
    main()
