"""The reference side of `cargo xtask bench-speed`: the same work with the official PyTorch code
and the Python libraries the field uses, on this machine, for docs/performance.md.

    PYTHONPATH=... python3 crates/ipt-model/benches/official_speed.py --official /path/to/Pretrained-IPT

Needs torch (2.11.0, as the project's libtorch), einops, numpy, scikit-image and Pillow, and a
checkout of huawei-noah/Pretrained-IPT (only `model/ipt.py` and `model/common.py` are imported; the
official model, randomly initialised with seed 0: speed does not depend on the weights).

Rows (each: one untimed warm-up, then repeated until --seconds have passed):
- whole-image x2 restore of a 96x96 input with the official `forward_chop` window schedule: the
  corner window, the bottom and top strips (`cut_h`), the right and left strips (`cut_w`) and the
  main grid, each in calls of at most `crop_batch_size` = 64 windows (the stitching itself, folds
  of a few hundred kilobytes, is left out: it costs well under 1 % of the network time);
- training steps (forward, L1, backward, per-tensor norm clipping to 1, torch.optim.Adam) of the
  base model at batch 2 and the tiny model at batch 16, sr2, 48x48 inputs, two tasks (sr2,
  denoise30) as `ipt bench-speed`; and with L1 + 0.1 * SupCon on the decoder tokens (`con=True`),
  SupCon written out below as the supervised-contrastive loss of Khosla et al. in the form the
  MindSpore IPT training uses (each image's tokens are positives of each other, tau 0.07,
  L2Normalize with epsilon 1e-4, 1e-8 inside the log);
- scikit-image SSIM (Gaussian weights, sigma 1.5, no sample covariance, data range 255) of the BT.601
  Y planes of a 1024x1024 RGB pair, with and without the colour conversion;
- Pillow's BICUBIC downscaling by 4 of a 1024x1024 RGB image (not MATLAB-exact; for scale).
"""

import argparse
import importlib
import json
import os
import sys
import time
import types

import numpy as np
import torch


def import_official(root):
    sys.path.insert(0, root)
    pkg = types.ModuleType("model")  # model/__init__.py needs the whole training framework
    pkg.__path__ = [os.path.join(root, "model")]
    sys.modules["model"] = pkg
    return importlib.import_module("model.ipt")


def build(ipt_mod, preset, scales):
    nf, pd, nh, nl = {"base": (64, 3, 12, 12), "tiny": (8, 4, 2, 1)}[preset]
    args = types.SimpleNamespace(
        n_feats=nf, n_colors=3, rgb_range=255, patch_size=48, patch_dim=pd, num_heads=nh,
        num_layers=nl, num_queries=len(scales), dropout_rate=0.0, no_mlp=False,
        pos_every=False, no_pos=False, no_norm=False, scale=scales,
    )
    torch.manual_seed(0)
    return ipt_mod.ipt(args)


def rate(seconds, work):
    """Units of work per second: one untimed call, then calls until `seconds` have passed."""
    work()
    start, done = time.perf_counter(), 0
    while done == 0 or time.perf_counter() - start < seconds:
        done += work()
    return done / (time.perf_counter() - start)


def official_windows(h, w, patch=48, batch=64):
    """Model-call batch sizes of the official forward_chop (model/__init__.py) for an h x w input."""
    stride = patch // 4  # int(shave/2) with shave = patch/2
    nh, nw = (h - patch) // stride + 1, (w - patch) // stride + 1

    def calls(n):
        return [min(batch, n - i) for i in range(0, n, batch)]

    # corner; cut_h on the bottom strip; cut_w on the right strip; cut_h top; cut_w left; main grid
    return [1] + calls(nw) + calls(nh) + calls(nw) + calls(nh) + calls(nh * nw)


def restore_row(ipt_mod, seconds, side=96):
    model = build(ipt_mod, "base", [2]).eval()
    calls = official_windows(side, side)
    g = torch.Generator().manual_seed(7)
    xs = [torch.rand(n, 3, 48, 48, generator=g) * 255 for n in calls]

    def work():
        with torch.no_grad():
            for x in xs:
                model(x)
        return sum(calls)

    r = rate(seconds, work)
    return {
        "work": "restore base x2, official forward_chop schedule",
        "value": r,
        "unit": "windows/s",
        "detail": f"{side}x{side} input, {sum(calls)} windows, {sum(calls) / r:.2f} s per image",
    }


def supcon(tokens, tau=0.07, base_tau=0.07):
    """Supervised-contrastive loss of tokens [B, N, d]: positives are the other tokens of the same image."""
    b, n, _ = tokens.shape
    z = tokens / tokens.pow(2).sum(-1, keepdim=True).clamp_min(1e-4).sqrt()
    z = z.transpose(0, 1).reshape(n * b, -1)  # patch-major rows, as the contrast views are stacked
    logits = z @ z.t() / tau
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    images = torch.arange(b).repeat(n)
    not_self = 1.0 - torch.eye(n * b)
    positives = (images[:, None] == images[None, :]).float() * not_self
    exp = torch.exp(logits) * not_self
    log_prob = logits - torch.log(exp.sum(1, keepdim=True) + 1e-8)
    mean_log_prob_pos = (positives * log_prob).sum(1) / positives.sum(1)
    return -(tau / base_tau) * mean_log_prob_pos.mean()


def train_row(ipt_mod, seconds, preset, batch, lam=0.0):
    model = build(ipt_mod, preset, [2, 1]).train()
    model.set_scale(0)

    def forward(x):
        if lam == 0.0:
            return model(x), None
        h = model.head[0](model.sub_mean(x))
        res, con = model.body(h, 0, con=True)
        return model.add_mean(model.tail[0](res + h)), con

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    g = torch.Generator().manual_seed(7)
    lr = torch.rand(batch, 3, 48, 48, generator=g) * 255
    hr = torch.rand(batch, 3, 96, 96, generator=g) * 255

    def work():
        opt.zero_grad(set_to_none=True)
        out, con = forward(lr)
        loss = torch.nn.functional.l1_loss(out, hr)
        if con is not None:
            loss = loss + lam * supcon(con)
        loss.backward()
        for p in params:
            if p.grad is not None:
                torch.nn.utils.clip_grad_norm_([p], 1.0)
        opt.step()
        return batch

    n = sum(p.numel() for p in params)
    return {
        "work": f"train {preset}, " + ("L1" if lam == 0.0 else f"L1 + {lam}·SupCon"),
        "value": rate(seconds, work),
        "unit": "patches/s",
        "detail": f"official model, sr2 step (fwd, L1, bwd, per-tensor clip, Adam), batch {batch}, "
        f"{n / 1e6:.2f} M parameters",
    }


def ssim_rows(seconds):
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (1024, 1024, 3)).astype(np.float32)
    b = rng.uniform(0, 255, (1024, 1024, 3)).astype(np.float32)
    wts = np.array([65.481, 128.553, 24.966]) / 255.0

    def y(img):
        return 16.0 + img.astype(np.float64) @ wts

    ya, yb = y(a), y(b)

    def ssim(x, z):
        return structural_similarity(
            x, z, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )

    with_y = rate(seconds, lambda: (ssim(y(a), y(b)), 1)[1])
    planes = rate(seconds, lambda: (ssim(ya, yb), 1)[1])
    mp = 1024 * 1024 / 1e6
    return [
        {"work": "SSIM-Y, scikit-image (with Y conversion)", "value": with_y * mp, "unit": "MP/s",
         "detail": f"1024x1024 RGB pair, {1e3 / with_y:.1f} ms per pair"},
        {"work": "SSIM on Y planes, scikit-image", "value": planes * mp, "unit": "MP/s",
         "detail": f"1024x1024, {1e3 / planes:.1f} ms per pair"},
    ]


def bicubic_row(seconds):
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8))
    r = rate(seconds, lambda: (img.resize((256, 256), Image.BICUBIC), 1)[1])
    return {"work": "bicubic down x4, Pillow BICUBIC (not MATLAB-exact)", "value": r * 1.048576,
            "unit": "MP/s", "detail": f"1024x1024 RGB uint8, {1e3 / r:.2f} ms per image"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="checkout of huawei-noah/Pretrained-IPT")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="leave out the base-model rows")
    a = ap.parse_args()
    ipt_mod = import_official(a.official)
    rows = []
    if not a.quick:
        rows.append(restore_row(ipt_mod, a.seconds))
        rows.append(train_row(ipt_mod, a.seconds, "base", 2))
    rows.append(train_row(ipt_mod, a.seconds, "tiny", 16))
    rows.append(train_row(ipt_mod, a.seconds, "tiny", 16, 0.1))
    rows += ssim_rows(a.seconds)
    rows.append(bicubic_row(a.seconds))
    header = {"torch": torch.__version__, "intra_op_threads": torch.get_num_threads()}
    print(json.dumps({"header": header, "rows": rows}, indent=2))
    print(f"torch {header['torch']}, {header['intra_op_threads']} intra-op threads\n", file=sys.stderr)
    print("| work | rate | unit | how |\n|---|---:|---|---|", file=sys.stderr)
    for r in rows:
        print(f"| {r['work']} | {r['value']:.3g} | {r['unit']} | {r['detail']} |", file=sys.stderr)


if __name__ == "__main__":
    main()
