"""The PyTorch twin of this project's network, its improved-CT step and its sampling.

Written from the Rust code, layer for layer and name for name: the U-Net of src/nn/unet.rs and
src/nn/layers.rs, the consistency parameterization of src/model.rs and src/schedule.rs, the
improved consistency-training step of src/train.rs (TrainConfig::improved: lognormal n,
lambda = 1 / (t_{n+1} - t_n), pseudo-Huber, Adam, the target and sampling EMAs), and one-step
sampling of src/sample.rs with the same Philox noise (src/random.rs), so the twin draws the
same digits as `cm sample` from the same checkpoint and seed.

    python twin.py check --checkpoint C --ours ours.npy [--seed 0] [--time-points 0.8]
    python twin.py check-step --init C --after A --data data/mnist
    python twin.py time --checkpoint C [--batch 64] [--iters 5] [--threads 2]
    python twin.py export-onnx --checkpoint C --out cm_small.onnx

`check` compares our samples (`cm sample --npy`) with the twin's and fails past --tolerance;
`check-step` redoes the first step of `cm train --steps 1 --init C --out A` (improved CT, our
Philox draws of digits, noise and levels) and compares the loss and the gradient (A's first Adam
moment is 0.1 x the gradient) with ours;
`time` prints one JSON line (seconds per CT step, per 1- and 2-step sampling of --batch
digits; the mean of --iters runs after one warm-up, as `cm bench` measures); `export-onnx`
writes f(x, sigma) with the checkpoint's sampling weights for onnxruntime-web (bench/ort).
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

# OpenMP threads that spin while they wait make PyTorch up to 10x slower on a machine whose
# cores other jobs share (bench/README.md); read when torch starts, so set before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

# src/schedule.rs
EPS, T, SIGMA_DATA, RHO, P_MEAN, P_STD = 0.002, 80.0, 0.5, 7.0, -1.1, 2.0
GROUPS = 8  # src/nn/layers.rs: GroupNorm(8), eps 1e-5, then SiLU
PIXELS = 28 * 28


def c_skip(t):
    return SIGMA_DATA**2 / ((t - EPS) ** 2 + SIGMA_DATA**2)


def c_out(t):
    return SIGMA_DATA * (t - EPS) / math.sqrt(SIGMA_DATA**2 + t * t)


def c_in(t):
    return 1.0 / math.sqrt(t * t + SIGMA_DATA**2)


def c_noise(t):
    return 0.25 * math.log(t)


# ---------------------------------------------------------------------------- the network F


class NormSilu(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(channels))
        self.beta = torch.nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return F.silu(F.group_norm(x, GROUPS, self.gamma, self.beta, 1e-5))


def conv(cin, cout, kernel=3, stride=1):
    """'same' padding ((kernel - 1) / 2), as src/backend/mod.rs Conv2d::pad."""
    return torch.nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2)


class ResBlock(torch.nn.Module):
    """h = Conv3x3(SiLU(GN(x))) + Linear(temb) per channel; out = Conv3x3(SiLU(GN(h))) + skip(x)."""

    def __init__(self, cin, cout, time_dim):
        super().__init__()
        self.norm1 = NormSilu(cin)
        self.conv1 = conv(cin, cout)
        self.time = torch.nn.Linear(time_dim, cout)
        self.norm2 = NormSilu(cout)
        self.conv2 = conv(cout, cout)
        self.skip = conv(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(self.norm1(x)) + self.time(temb)[:, :, None, None]
        h = self.conv2(self.norm2(h))
        return h + (self.skip(x) if self.skip is not None else x)


class UNet(torch.nn.Module):
    """src/nn/unet.rs; parameter names are the checkpoint's (`time.0.weight`, `down.2.skip.bias`, ...)."""

    def __init__(self, widths=(16, 32, 32)):
        super().__init__()
        c0, c1, c2 = self.widths = tuple(widths)
        t = 4 * c0
        self.half = c0
        self.time = torch.nn.ModuleList([torch.nn.Linear(2 * c0, t), torch.nn.SiLU(), torch.nn.Linear(t, t)])
        self.stem = conv(1, c0)
        self.down = torch.nn.ModuleList(
            [ResBlock(c0, c0, t), conv(c0, c0, 3, 2), ResBlock(c0, c1, t), conv(c1, c1, 3, 2), ResBlock(c1, c2, t)]
        )
        self.mid = ResBlock(c2, c2, t)
        self.up = torch.nn.ModuleList(
            [ResBlock(2 * c2, c2, t), conv(c2, c2), ResBlock(c2 + c1, c1, t), conv(c1, c1), ResBlock(c1 + c0, c0, t)]
        )
        self.head = torch.nn.ModuleDict({"norm": NormSilu(c0), "conv": conv(c0, 1)})
        # The sinusoidal embedding's frequencies exp(-ln(10000) i / half), in f32 as the kernel.
        i = torch.arange(self.half, dtype=torch.float32)
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * i / self.half), persistent=False)

    def forward(self, x, noise):
        arg = 1000.0 * noise[:, None] * self.freqs[None, :]
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)  # sin first, then cos
        temb = self.time[2](F.silu(self.time[0](emb)))
        e28 = self.down[0](self.stem(x), temb)
        e14 = self.down[2](self.down[1](e28), temb)
        e7 = self.down[4](self.down[3](e14), temb)
        h = self.mid(e7, temb)
        h = self.up[0](torch.cat([h, e7], 1), temb)
        h = self.up[1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up[2](torch.cat([h, e14], 1), temb)
        h = self.up[3](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up[4](torch.cat([h, e28], 1), temb)
        return self.head["conv"](self.head["norm"](h))


def coefficients(times):
    """Per-sample c_skip, c_out, c_in, c_noise of src/model.rs: f64 on the host, then f32."""
    cols = [[f(t) for t in times] for f in (c_skip, c_out, c_in, c_noise)]
    return [torch.tensor(c, dtype=torch.float32) for c in cols]


def consistency(net, x, times):
    """f(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t)) (src/model.rs, Consistency)."""
    skip, out, inp, noise = coefficients(times)
    col = lambda c: c[:, None, None, None]  # noqa: E731
    return col(skip) * x + col(out) * net(col(inp) * x, noise)


class OnnxConsistency(torch.nn.Module):
    """f(x, sigma) with the coefficients computed in the graph: the model bench/ort samples with."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, sigma):
        s = sigma[:, None, None, None]
        skip = SIGMA_DATA**2 / ((s - EPS) ** 2 + SIGMA_DATA**2)
        out = SIGMA_DATA * (s - EPS) / torch.sqrt(SIGMA_DATA**2 + s * s)
        inp = 1.0 / torch.sqrt(s * s + SIGMA_DATA**2)
        return skip * x + out * self.net(inp * x, 0.25 * torch.log(sigma))


# ---------------------------------------------------------------------------- checkpoints


def load(checkpoint, state="ema"):
    """The network of a checkpoint of `cm train` (src/checkpoint.rs: `<state>.<parameter>`)."""
    tensors = load_file(checkpoint)
    with open(checkpoint, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    meta = header.get("__metadata__", {})
    widths = tuple(int(w) for w in meta["widths"].split(","))
    if meta.get("objective") in ("teacher", "denoising", "progressive"):
        sys.exit(f"{checkpoint}: a denoiser (EDM teacher); the twin is of a consistency model")
    net = UNet(widths)
    own = {name for name, _ in net.named_parameters()}
    stored = {k[len(state) + 1 :] for k in tensors if k.startswith(state + ".")}
    if own != stored:
        sys.exit(f"{checkpoint}: parameters differ from the twin's: {sorted(own ^ stored)[:5]}")
    net.load_state_dict({k: torch.from_numpy(tensors[f"{state}.{k}"]) for k in own}, strict=True)
    return net, meta


# ---------------------------------------------------------------------------- Philox (src/random.rs)

MASK = np.uint64(0xFFFFFFFF)


def philox_words(index, step, stream, seed):
    """Philox4x32-10 of counters [index, step, stream, 0] under key [seed lo, seed hi]."""
    c0 = np.asarray(index, dtype=np.uint64)
    c1 = np.full_like(c0, step)
    c2 = np.full_like(c0, stream)
    c3 = np.zeros_like(c0)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    w0, w1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
    for r in range(10):
        if r > 0:
            k0, k1 = (k0 + w0) & MASK, (k1 + w1) & MASK
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & MASK, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & MASK
    return c0, c1, c2, c3


def philox_normal(count, seed, stream, step=0):
    """random::normal for indices 0..count: Box-Muller on the first two words, in f32."""
    w = philox_words(np.arange(count, dtype=np.uint64), step, stream, seed)
    scale = np.float32(1.0 / 16_777_216.0)
    u1 = ((w[0] >> np.uint64(8)) + np.uint64(1)).astype(np.float32) * scale
    u2 = (w[1] >> np.uint64(8)).astype(np.float32) * scale
    return np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(2.0 * math.pi) * u2)


def sample(net, count, seed, time_points=()):
    """src/sample.rs: x = f(T z, T), z from stream 0; refinement step s uses stream s + 1."""
    z = torch.from_numpy(philox_normal(count * PIXELS, seed, 0).reshape(count, 1, 28, 28))
    x = consistency(net, T * z, [T] * count)
    for s, tau in enumerate(time_points):
        z = torch.from_numpy(philox_normal(count * PIXELS, seed, s + 1).reshape(count, 1, 28, 28))
        x = consistency(net, x + float(np.float32(math.sqrt(tau * tau - EPS * EPS))) * z, [tau] * count)
    return x


# ---------------------------------------------------------------------------- the improved-CT step


def karras_grid(n):
    low, high = EPS ** (1 / RHO), T ** (1 / RHO)
    times = [(low + i / (n - 1) * (high - low)) ** RHO for i in range(n)]
    times[0], times[-1] = EPS, T
    return times


def improved_discretization(k, total_steps, s0=10, s1=160):
    """N(k) of TrainConfig::improved (src/schedule.rs, CtKind::Improved)."""
    doublings = math.log2(s1 // s0) + 1.0
    stage_steps = max(int(total_steps / doublings), 1)
    return min(s0 * 2 ** (k // stage_steps), s1) + 1


def lognormal_levels(n):
    """The Karras grid of n points and P(index i) by the lognormal's mass on [t_i, t_{i+1}]."""
    times = karras_grid(n)
    cdf = [math.erf((math.log(t) - P_MEAN) / (math.sqrt(2) * P_STD)) for t in times]
    mass = np.diff(cdf)
    return np.array(times), mass / mass.sum()


def ct_loss(online_net, target_net, x, z, t_n, t_next):
    """The improved-CT loss of src/train.rs (consistency_gradients, backpropagate): mean over the
    batch of lambda d(f_theta(x + t_{n+1} z, t_{n+1}), stopgrad f_theta_minus(x + t_n z, t_n)),
    lambda = 1 / (t_{n+1} - t_n), d pseudo-Huber over the 784 pixels with c = 0.00054 sqrt(784)
    (sqrt(|a - b|^2 + c^2) - c, written without the cancellation as the loss kernel does)."""
    col = lambda v: torch.from_numpy(np.asarray(v, dtype=np.float32))[:, None, None, None]  # noqa: E731
    weight = torch.from_numpy((1.0 / (t_next - t_n)).astype(np.float32))
    online = consistency(online_net, x + col(t_next) * z, t_next)
    with torch.no_grad():
        target = consistency(target_net, x + col(t_n) * z, t_n)
    sq = ((online - target) ** 2).reshape(x.shape[0], -1).sum(1)
    c = float(np.float32(0.00054 * math.sqrt(PIXELS)))  # schedule::pseudo_huber_c, as f32
    return (weight * sq / (torch.sqrt(sq + c * c) + c)).mean()


class CtStep:
    """One step of bench::bench_train_step: TrainConfig::improved(1000) at `batch`, from `init`,
    on the synthetic digits `(i * 37) % 256`: batch gather, noise, the online forward at
    t_{n+1} with gradients, the target forward at t_n without (`ct_loss`, which `check-step`
    compares with ours), backward, Adam (2e-4, 0.9, 0.999, 1e-8), theta_minus <- theta (mu = 0)
    and the sampling EMA. Its random draws are torch's and numpy's: the same work."""

    def __init__(self, init, batch, total_steps=1000, seed=0):
        self.online = init
        self.target = UNet(init.widths)
        self.target.load_state_dict(init.state_dict())
        self.target.requires_grad_(False)
        self.ema = [p.detach().clone() for p in init.parameters()]
        self.opt = torch.optim.Adam(init.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
        self.batch, self.total_steps, self.k = batch, total_steps, 0
        images = (np.arange(batch * PIXELS) * 37 % 256).astype(np.uint8).reshape(batch, PIXELS)
        self.data = torch.from_numpy(images)
        self.rng = np.random.default_rng(seed)

    def __call__(self):
        b = self.batch
        times, p = lognormal_levels(improved_discretization(self.k, self.total_steps))
        i = self.rng.choice(len(p), size=b, p=p)
        t_n, t_next = times[i], times[i + 1]
        rows = torch.randint(0, self.data.shape[0], (b,))
        x = ((2.0 * self.data[rows].float() - 255.0) * (1.0 / 255.0)).reshape(b, 1, 28, 28)
        z = torch.randn(b, 1, 28, 28)
        loss = ct_loss(self.online, self.target, x, z, t_n, t_next)
        self.opt.zero_grad(set_to_none=False)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            params = list(self.online.parameters())
            torch._foreach_copy_(list(self.target.parameters()), params)  # mu = 0
            decay = min(0.999, (1 + self.k) / (10 + self.k))
            torch._foreach_lerp_(self.ema, params, 1.0 - decay)
        self.k += 1
        return loss.item()


def first_step_with_our_draws(net, images, batch, seed=0, k=0, total_steps=1):
    """The loss and gradients of step k of `cm train` (improved CT, unconditional) with its
    draws: src/train.rs data_and_noise (Philox streams 0: digits, 1: noise) and draw_levels
    (stream 2: u, then the first index whose cumulative probability exceeds u)."""
    count = images.shape[0]
    words = philox_words(np.arange(batch, dtype=np.uint64), k, 0, seed)[0]
    index = (words * np.uint64(count)) >> np.uint64(32)  # random::index_below
    x = (np.float32(2.0) * images[index].astype(np.float32) - np.float32(255.0)) * np.float32(1.0 / 255.0)
    x = torch.from_numpy(x.reshape(batch, 1, 28, 28))
    z = torch.from_numpy(philox_normal(batch * PIXELS, seed, 1, k).reshape(batch, 1, 28, 28))
    u = (philox_words(np.arange(batch, dtype=np.uint64), k, 2, seed)[0] >> np.uint64(8)).astype(np.float32)
    u = u.astype(np.float64) / 16_777_216.0
    times, p = lognormal_levels(improved_discretization(k, total_steps))
    cumulative = np.cumsum(p)
    cumulative[-1] = 1.0
    i = np.minimum(np.searchsorted(cumulative, u, side="right"), len(p) - 1)
    t_n, t_next = times[i], times[i + 1]
    loss = ct_loss(net, net, x, z, t_n, t_next)  # theta_minus = theta at the start
    net.zero_grad()
    loss.backward()
    return loss.item(), {name: q.grad.numpy() for name, q in net.named_parameters()}


def read_idx_images(data):
    """MNIST's training digits, as src/data/mnist.rs reads them (plain or gzipped IDX)."""
    path = os.path.join(data, "train-images-idx3-ubyte")
    raw = open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()
    n = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, PIXELS)


# ---------------------------------------------------------------------------- commands


def seconds_per_run(run, iters):
    """The mean of `iters` calls after one warm-up (as bench.rs's seconds_per_run)."""
    run()
    start = time.perf_counter()
    for _ in range(iters):
        run()
    return (time.perf_counter() - start) / iters


def cmd_check(a):
    net, _ = load(a.checkpoint)
    ours = np.load(a.ours)
    with torch.inference_mode():
        twin = sample(net, ours.shape[0], a.seed, a.time_points).numpy()
    diff = np.abs(ours - twin)
    print(
        f"twin check: {ours.shape[0]} samples of {a.checkpoint} (seed {a.seed}, {len(a.time_points) + 1} step(s)): "
        f"max |ours - twin| = {diff.max():.2e}, mean {diff.mean():.2e}, values in [{ours.min():.2f}, {ours.max():.2f}] "
        f"(tolerance {a.tolerance:.0e})"
    )
    if not diff.max() <= a.tolerance:
        sys.exit("twin check FAILED: the twin does not reproduce our samples")


def cmd_check_step(a):
    net, _ = load(a.init)
    after = load_file(a.after)
    with open(a.after, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    if meta["step"] != "1" or meta["objective"] != "consistency" or meta["schedule"] != "improved":
        sys.exit(f"{a.after}: not the first step of an improved-CT run (cm train --steps 1 --init ...)")
    batch, seed, total = int(meta["batch"]), int(meta["seed"]), int(meta["total_steps"])
    loss, grads = first_step_with_our_draws(net, read_idx_images(a.data), batch, seed, 0, total)
    scale = np.float32(1.0) - np.float32(0.9)  # Adam's first moment after one step: (1 - beta1) g
    ours = {name: after[f"adam_m.{name}"] / scale for name in grads}
    top = max(float(np.abs(g).max()) for g in ours.values())
    worst = max(float(np.abs(ours[n] - grads[n]).max()) for n in grads)
    our_loss = float(open(a.after.rsplit(".", 1)[0] + ".csv").read().strip().splitlines()[-1].split(",")[1])
    print(
        f"twin CT-step check: {a.after} (batch {batch}): loss ours {our_loss:.6f}, twin {loss:.6f}; "
        f"gradient max |ours - twin| = {worst:.2e} against max |gradient| {top:.2e} ({worst / top:.1e} of it)"
    )
    if not (abs(our_loss - loss) <= 1e-4 * abs(loss) + 1e-6 and worst <= a.tolerance * top):
        sys.exit("twin CT-step check FAILED: the twin's step differs from ours")


def cmd_time(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net, _ = load(a.checkpoint)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
              "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]}
    if "train" in a.parts:
        step = CtStep(load(a.checkpoint, "online")[0], a.batch)
        result["train_step_s"] = seconds_per_run(step, a.iters)
    if "sample" in a.parts:
        with torch.inference_mode():
            for steps, points in ((1, ()), (2, (T / 4,))):
                result[f"sample_{steps}_s"] = seconds_per_run(lambda: sample(net, a.batch, 0, points), a.iters)
    print(json.dumps(result))


def cmd_export(a):
    net, _ = load(a.checkpoint)
    model = OnnxConsistency(net).eval()
    x, sigma = torch.randn(a.batch, 1, 28, 28) * T, torch.full((a.batch,), T)
    torch.onnx.export(
        model,
        (x, sigma),
        a.out,
        input_names=["x", "sigma"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "sigma": {0: "batch"}, "y": {0: "batch"}},
        opset_version=17,
        dynamo=False,  # the TorchScript exporter: needs only the onnx package
    )
    with torch.inference_mode():
        same = torch.allclose(model(x, sigma), consistency(net, x, [T] * a.batch), atol=1e-5)
    print(f"wrote {a.out} (f(x, sigma) of {a.checkpoint}'s sampling weights; graph = twin: {same})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="compare `cm sample --npy` with the twin's samples")
    check.add_argument("--checkpoint", required=True)
    check.add_argument("--ours", required=True, help="our samples, `cm sample --npy`")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--time-points", type=float, nargs="*", default=[])
    check.add_argument("--tolerance", type=float, default=1e-4)
    step = sub.add_parser("check-step", help="compare the first step of `cm train --init` with the twin's")
    step.add_argument("--init", required=True, help="the checkpoint `cm train --init` started from")
    step.add_argument("--after", required=True, help="the checkpoint `cm train --steps 1` wrote")
    step.add_argument("--data", default="data/mnist")
    step.add_argument("--tolerance", type=float, default=1e-3, help="of the largest gradient value")
    timing = sub.add_parser("time", help="time the twin's CT step and sampling, one JSON line")
    timing.add_argument("--checkpoint", required=True)
    timing.add_argument("--batch", type=int, default=64)
    timing.add_argument("--iters", type=int, default=5)
    timing.add_argument("--threads", type=int, default=2)
    timing.add_argument("--parts", default="train,sample")
    export = sub.add_parser("export-onnx", help="f(x, sigma) with the checkpoint's weights, to ONNX")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--batch", type=int, default=64)
    a = parser.parse_args()
    {"check": cmd_check, "check-step": cmd_check_step, "time": cmd_time, "export-onnx": cmd_export}[a.command](a)


if __name__ == "__main__":
    main()
