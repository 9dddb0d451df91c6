"""Every command of hashguard on an accelerator beside the same work on the CPU, in one table.

    python benchmarks/bench_device.py [--device auto|cuda|cuda:N|mps|cpu] [--out DIR] [--quick] [--keep]

What it runs, on the embedded demo digits (the CPU recipe of ``configs/train-demo.yaml``), through the command
line exactly as a user would:

* ``train`` (CSQ, small CNN) on the CPU and on the device, same seed: seconds and validation mAP of each;
* ``encode`` of the CPU-trained checkpoint's database on both: the fraction of equal bits;
* ``attack`` (the mainstay attack, 100 PGD steps at 8/255) of the same checkpoint on both: mAP of each;
* ``defend`` (SAAT, demo preset, one epoch), ``detect`` (Hamming detector on the attack's result), and the
  methods that are not a per-batch loss (ADSH, BTHash, the HashVFL consistency method with the ``bn-sign``
  head) trained one epoch on the device;
* ``hashguard fingerprint`` of a model before and after a move to the device: equal by construction (the probe
  logits are computed in float64 on the CPU);
* under ``torchrun --nproc_per_node 1`` where the device is CUDA, ``train`` in a process group of one with NCCL:
  the same weights as the one-process run on the device, up to the device's non-deterministic kernels.

The accelerator's numbers are not expected to equal the CPU's in the last bits (other kernels, other summation
orders); the table shows how far they are apart. Prints the machine's load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table_text import load_text  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TRAIN_CONFIG = REPO / "configs" / "train-demo.yaml"


def hashguard(*args: str, cwd: Path, env: dict[str, str] | None = None, launcher: list[str] | None = None
              ) -> tuple[float, str]:
    """Run one hashguard command; (wall seconds, stdout). A failure prints its stderr and raises."""
    command = (launcher or [sys.executable, "-m"]) + ["hashguard", *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise RuntimeError(f"failed: {' '.join(args[:2])}: {done.stderr.strip().splitlines()[-1:]}")
    return seconds, done.stdout


def val_map(run: Path) -> str:
    """The run's best validation mAP, or '-' for a method that keeps no validation split (ADSH, BTHash)."""
    value = json.loads((run / "model.json").read_text())["training"].get("best_val_map")
    return "-" if value is None else f"{float(value):.4f}"


def attack_result(directory: Path) -> dict:
    results = sorted(directory.glob("*_result.json"))
    if not results:
        raise SystemExit(f"no attack result in {directory}")
    return json.loads(results[0].read_text())


def attack_summary(directory: Path, seconds: float) -> str:
    result = attack_result(directory)
    return f"{seconds:.1f} s, {result['adv_map']:.4f} (L-inf {result['perceptibility']['linf'] * 255:.3f}/255)"


def codes(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return np.asarray(data["codes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto",
                        help="the accelerator (default auto: CUDA, then MPS; without one, the CPU against itself)")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="fewer queries and epochs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()

    work = args.out or Path(tempfile.mkdtemp(prefix="bench-device-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    from hashguard.devices import resolve_device

    dev = str(resolve_device(args.device))
    if dev == "cpu":
        print("no accelerator: the CPU is compared with itself (a check of the script and of determinism)")
    epochs = "1" if args.quick else "2"
    queries = "64" if args.quick else "256"
    rows: list[dict] = []
    print(f"load average before: {load_text()}", flush=True)

    def row(work_name: str, cpu: object, device: object, note: str) -> None:
        rows.append({"work": work_name, "cpu": cpu, "device": device, "note": note})
        print(f"  {work_name}: cpu {cpu} | {dev} {device} | {note}", flush=True)

    def run(*command: str, launcher: list[str] | None = None) -> tuple[float, str]:
        return hashguard(*command, cwd=work, env=env, launcher=launcher)

    train = ["train", "--config", str(TRAIN_CONFIG), "--set", f"train.epochs={epochs}"]

    def train_csq() -> None:
        t_cpu, _ = run(*train, "--out", "csq-cpu", "--device", "cpu")
        t_dev, _ = run(*train, "--out", "csq-dev", "--device", dev)
        row("train CSQ small CNN (s, val mAP)", f"{t_cpu:.1f} s, {val_map(work / 'csq-cpu')}",
            f"{t_dev:.1f} s, {val_map(work / 'csq-dev')}", f"{epochs} epochs, seed 0")

    def encode() -> None:
        t_cpu, _ = run("encode", "csq-cpu", "--split", "database", "--out", "db-cpu.npz", "--device", "cpu")
        t_dev, _ = run("encode", "csq-cpu", "--split", "database", "--out", "db-dev.npz", "--device", dev)
        a, b = codes(work / "db-cpu.npz"), codes(work / "db-dev.npz")
        row("encode database (s)", f"{t_cpu:.1f}", f"{t_dev:.1f}",
            f"equal bits {np.mean(a == b):.6f} of {a.size:,}; equal codes {np.mean((a == b).all(axis=1)):.4f}")

    def attack() -> None:
        command = ["attack", "csq-cpu", "--attack", "mainstay", "--eps", "8/255", "--iterations", "100",
                   "--queries", queries]
        t_cpu, _ = run(*command, "--out", "atk-cpu", "--device", "cpu")
        t_dev, _ = run(*command, "--out", "atk-dev", "--device", dev)
        row("mainstay attack, 100 PGD steps (s, mAP)", attack_summary(work / "atk-cpu", t_cpu),
            attack_summary(work / "atk-dev", t_dev),
            f"{queries} queries, clean {attack_result(work / 'atk-cpu')['clean_map']:.4f}")

    def defend() -> None:
        t_dev, _ = run("defend", "csq-cpu", "--defense", "saat", "--preset", "demo", "--set", "epochs=1",
                       "--out", "saat-dev", "--device", dev)
        row("defend SAAT, 1 epoch (s)", "-", f"{t_dev:.1f}", "demo preset")

    def detect() -> None:
        t_dev, out = run("detect", "csq-cpu", "--attack-result", "atk-dev", "--device", dev, "--json")
        found = json.loads(out)["attacks"]["mainstay"]
        row("detect (Hamming detector) (s)", "-", f"{t_dev:.1f}",
            f"AUROC {found['auroc']:.4f}, TPR {found['tpr']:.3f} at FPR {found['target_fpr']}")

    def other_method(method: str, *extra: str) -> None:
        t_dev, _ = run(*train[:-2], "--set", "train.epochs=1", "--set", f"method.name={method}", *extra,
                       "--out", f"{method}-dev", "--device", dev)
        row(f"train {method}, 1 epoch (s, val mAP)", "-", f"{t_dev:.1f} s, {val_map(work / f'{method}-dev')}", "")

    def fingerprint_move() -> None:
        probe = (
            "import sys; from hashguard.models.checkpoint import load_model; "
            "from hashguard.models.fingerprint import fingerprint; "
            "m, _ = load_model(sys.argv[1]); a = fingerprint(m).digest; m.to(sys.argv[2]); "
            "b = fingerprint(m).digest; print(a == b, a[:12], b[:12])"
        )
        done = subprocess.run([sys.executable, "-c", probe, str(work / "csq-cpu"), dev], capture_output=True,
                              text=True, env=env)
        if done.returncode:
            raise RuntimeError(done.stderr.strip()[-300:])
        row("fingerprint equal before / after a move", "-", done.stdout.strip(), "")

    def torchrun_one() -> None:
        from safetensors.numpy import load_file

        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m"]
        t_dev, _ = run(*train, "--out", "csq-torchrun", "--device", dev, launcher=launcher)
        x = load_file(str(work / "csq-dev" / "model.safetensors"))
        y = load_file(str(work / "csq-torchrun" / "model.safetensors"))
        gap = max(float(np.max(np.abs(x[k].astype(np.float64) - y[k]))) if x[k].size else 0.0 for k in x)
        backend = "NCCL" if dev.startswith("cuda") else "Gloo"
        row(f"torchrun, 1 process, {backend} (s, val mAP)", "-",
            f"{t_dev:.1f} s, {val_map(work / 'csq-torchrun')}", f"largest weight gap to one process {gap:.2e}")

    def adsh() -> None:
        other_method("adsh")

    def bthash() -> None:
        other_method("bthash")

    def hashvfl() -> None:
        other_method("hashvfl", "--set", "model.hash_norm=bn-sign")

    steps = [train_csq, encode, attack, defend, detect, adsh, bthash, hashvfl, fingerprint_move, torchrun_one]
    for step in steps:
        try:
            step()
        except Exception as error:  # one broken step must not hide the others
            row(getattr(step, "__name__", "step"), "-", "FAILED", str(error)[:300])

    print(f"load average after: {load_text()}")
    width = max(len(r["work"]) for r in rows)
    print(f"\n{'work':<{width}} | {'cpu':<22} | {dev:<22} | note")
    for r in rows:
        print(f"{r['work']:<{width}} | {str(r['cpu']):<22} | {str(r['device']):<22} | {r['note']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.out is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
