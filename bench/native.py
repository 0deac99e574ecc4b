"""Our CPU backend (`cm bench`) beside the PyTorch twin (twin.py), in one run: first checks that
the twin draws our digits (`cm sample --npy` against `twin.py check`, one step and two) and takes
our training step (`cm train --steps 1` against `twin.py check-step`: loss and gradient), then
rounds that alternate the two engines (the order flips every round, so the machine's load hits
both alike), each timing the improved-CT step of the small network at the same batch and
one-step and two-step sampling of that many digits, with the same thread count. Prints each
engine's median over the rounds (and the range) and the ratios. scripts/bench-native runs it.

    python native.py --cm target/release/cm [--rounds 5] [--iters 3] [--batch 64] [--threads 2]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHECKPOINT = os.path.join(ROOT, "assets", "consistency-small.safetensors")
TWIN = [sys.executable, os.path.join(HERE, "twin.py")]


def run(command, env=None):
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout}{done.stderr}")
    return done.stdout


def check(cm, out, env):
    """Our samples and the twin's from the shipped checkpoint, 1 step and 2 steps (80, 0.8), then
    the first training step."""
    for points in ([], ["0.8"]):
        npy = os.path.join(out, f"ours-{len(points) + 1}-step.npy")
        extra = ["--time-points", ",".join(points)] if points else []
        run([cm, "sample", "--checkpoint", CHECKPOINT, "--backend", "cpu", "--count", "64", "--seed", "0",
             "--npy", npy, "--out", npy.replace(".npy", ".png"), *extra], env)
        twin_points = ["--time-points", *points] if points else []
        print(run([*TWIN, "check", "--checkpoint", CHECKPOINT, "--ours", npy, *twin_points], env).strip())
    # One improved-CT step on MNIST from the same weights: the loss and the gradient.
    after = os.path.join(out, "ct-step.safetensors")
    for stale in (after, after.replace(".safetensors", ".csv")):
        if os.path.exists(stale):
            os.remove(stale)
    data = os.path.join(ROOT, "data", "mnist")
    run([cm, "train", "--backend", "cpu", "--steps", "1", "--init", CHECKPOINT, "--data", data, "--out", after], env)
    print(run([*TWIN, "check-step", "--init", CHECKPOINT, "--after", after, "--data", data], env).strip())


def ours(cm, a, env):
    """`cm bench` on the CPU backend: seconds per CT step, per 1-step and 2-step sampling."""
    text = run([cm, "bench", "--backend", "cpu", "--parts", "train,sample", "--configs", "small",
                "--batch", str(a.batch), "--iters", str(a.iters)], env)
    backend = re.search(r"backend: (.*)", text).group(1)
    step = re.search(r"consistency-training step.*:\n\s+\[[^\]]*\]\s+([\d.]+) ms", text)
    sample = re.search(r"sampling .*:\n\s+\[[^\]]*\]\s+([\d.]+) ms\s+([\d.]+) ms", text)
    if not (step and sample):
        sys.exit(f"could not read `cm bench`'s output:\n{text}")
    ms = [float(step.group(1)), float(sample.group(1)), float(sample.group(2))]
    return f"ours, CPU backend: {backend}", [v / 1e3 for v in ms]


def twin(a, env):
    line = run([*TWIN, "time", "--checkpoint", CHECKPOINT, "--batch", str(a.batch), "--iters", str(a.iters),
                "--threads", str(a.threads)], env).strip().splitlines()[-1]
    r = json.loads(line)
    return f"PyTorch {r['torch']} on the CPU, {r['threads']} threads", [r["train_step_s"], r["sample_1_s"], r["sample_2_s"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cm", required=True, help="the cm binary (cargo build --release --bin cm)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=3, help="timed runs per measurement, after one warm-up")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    out = os.path.join(HERE, "out")
    os.makedirs(out, exist_ok=True)
    threads = str(a.threads)
    env = dict(os.environ, RAYON_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    # OpenMP threads that spin while they wait cost PyTorch 10x on a machine whose cores other
    # jobs share (measured here); passive waiting is what a shared machine calls for.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    check(a.cm, out, env)
    engines = {"ours": (lambda: ours(a.cm, a, env)), "twin": (lambda: twin(a, env))}
    names, times = {}, {k: [] for k in engines}
    load = [os.getloadavg()[0]]
    started = time.time()
    for r in range(a.rounds):
        for key in (["ours", "twin"] if r % 2 == 0 else ["twin", "ours"]):
            names[key], values = engines[key]()
            times[key].append(values)
            print(f"round {r + 1}/{a.rounds} {key}: step {values[0] * 1e3:.1f} ms, "
                  f"sampling {values[1] * 1e3:.1f} / {values[2] * 1e3:.1f} ms", flush=True)
    load.append(os.getloadavg()[0])

    parts = [f"CT step at batch {a.batch}", f"{a.batch} samples, 1 step", f"{a.batch} samples, 2 steps"]
    print(f"\nsmall network (16/32/32), {a.rounds} alternating rounds in {time.time() - started:.0f} s, "
          f"each the mean of {a.iters} runs after a warm-up; OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}; "
          f"load average {load[0]:.1f} -> {load[1]:.1f}")
    print(f"{'engine':<46}" + "".join(f"{p:>32}" for p in parts))
    medians = {}
    for key in engines:
        columns = list(zip(*times[key]))
        medians[key] = [statistics.median(c) for c in columns]
        cells = [f"{m * 1e3:.1f} ms ({min(c) * 1e3:.0f}-{max(c) * 1e3:.0f})" for m, c in zip(medians[key], columns)]
        print(f"{names[key]:<46}" + "".join(f"{c:>32}" for c in cells))
    ratios = [t / o for t, o in zip(medians["twin"], medians["ours"])]
    print(f"{'ratio, PyTorch / ours (above 1: ours faster)':<46}" + "".join(f"{r:>31.2f}x" for r in ratios))


if __name__ == "__main__":
    main()
