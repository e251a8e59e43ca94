"""Generation throughput: prior samples/s (decoding + SELFIES -> canonical SMILES) and peak memory.

    python benchmarks/sample_throughput.py --presets tiny default -n 2000 --batch-size 1024
    python benchmarks/sample_throughput.py --model MODEL_DIR -n 10000

Without ``--model`` the presets are untrained, so most rows run to the maximum length: an
upper bound on decoding time. A trained model stops earlier (at each molecule's eos).
"""

from __future__ import annotations

import argparse
import time

import torch
from train_throughput import load_molecules, peak_memory

from molvae.devices import choose_device
from molvae.model.presets import PRESETS, build_model
from molvae.model.store import load_model
from molvae.model.vae import SelfiesVAE


def benchmark(label: str, model: SelfiesVAE, n: int, batch_size: int) -> None:
    device = model.device
    model.sample(min(n, batch_size), seed=0, batch_size=batch_size)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    smiles = model.sample(n, seed=1, batch_size=batch_size)
    seconds = time.perf_counter() - started
    unique = len(set(smiles)) / n
    print(f"sample {label:10s} n {n:6d}  batch {batch_size:5d}  {n / seconds:9.0f} molecules/s  "
          f"({seconds:.2f} s)  unique {unique:.2f}  peak {peak_memory(device)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "default"], choices=PRESETS)
    parser.add_argument("--model", help="a trained model folder instead of untrained presets")
    parser.add_argument("-n", type=int, default=2000, help="molecules per measurement")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if args.model:
        benchmark("trained", load_model(args.model, str(device)), args.n, args.batch_size)
        return
    _, vocab = load_molecules(5000)
    for preset in args.presets:
        torch.manual_seed(0)
        benchmark(preset, build_model(vocab, preset).to(device).eval(), args.n, args.batch_size)


if __name__ == "__main__":
    main()
