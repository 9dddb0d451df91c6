"""Training throughput (images per second) on this machine's CPU: the small CNN and ResNet18.

Prints a table; never run as a test. ``--quick`` measures fewer batches.

    python benchmarks/bench_training.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from hashguard.methods import build_method
from hashguard.models import HashModel, ModelSpec

CASES = [
    ("small_cnn", 1, 28, 64),
    ("small_cnn", 1, 56, 64),
    ("resnet18", 3, 224, 16),
]


def throughput(backbone: str, channels: int, size: int, batch: int, batches: int) -> tuple[float, float]:
    torch.manual_seed(0)
    try:
        model = HashModel(ModelSpec(backbone=backbone, bits=32, in_channels=channels, image_size=size,
                                    mean=[0.5] * (3 if backbone != "small_cnn" else channels),
                                    std=[0.25] * (3 if backbone != "small_cnn" else channels)))
    except Exception as exc:  # torchvision missing
        print(f"{backbone}: skipped ({exc})")
        return float("nan"), float("nan")
    method = build_method("csq", bits=32, num_classes=10, num_train=batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.rand(batch, channels, size, size)
    labels = torch.nn.functional.one_hot(torch.arange(batch) % 10, 10).float()
    index = torch.arange(batch)
    model.train()

    def step() -> None:
        loss = method(model(images), labels, index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(batches):
        step()
    train_rate = batch * batches / (time.perf_counter() - started)
    model.eval()
    with torch.no_grad():
        started = time.perf_counter()
        for _ in range(batches):
            model.encode(images)
        encode_rate = batch * batches / (time.perf_counter() - started)
    return train_rate, encode_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = 3 if args.quick else 20
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {batches} batches per case")
    print("| backbone | input | batch | train images/s | encode images/s |")
    print("|---|---|---|---|---|")
    for backbone, channels, size, batch in CASES:
        train_rate, encode_rate = throughput(backbone, channels, size, batch, batches)
        print(f"| {backbone} | {channels}x{size}x{size} | {batch} | {train_rate:,.0f} | {encode_rate:,.0f} |")


if __name__ == "__main__":
    main()
