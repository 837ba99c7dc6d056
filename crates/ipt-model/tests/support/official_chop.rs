//! Test reference: the official all-at-once window stitching, transcribed call for call from
//! `model/__init__.py` of the official IPT code — `forward_chop` / `cut_h` / `cut_w` (exact)
//! and `forward_chop_new` / `cut_h_new` / `cut_w_new` (fast) — with the same `fold` (col2im)
//! calls, every window group evaluated separately (corner, bottom strip, right strip, top strip,
//! left strip, main grid), and the ×8 `forward_x8` with `cat(…).mean(0)`. This is what the
//! library did before it streamed; the streamed path must reproduce it.
//!
//! Inputs must be at least `patch` in both dimensions (the official code's own limit).

#![allow(dead_code)]

use tch::{Device, Kind, Tensor};

/// The official window groups, in the order the official code evaluates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Corner,
    BottomStrip,
    RightStrip,
    TopStrip,
    LeftStrip,
    MainGrid,
}

/// `fast = false`: `forward_chop` (stride P/4, shave P/2); `fast = true`: `forward_chop_new`
/// (stride P − P/4, shave P/4).
pub fn official_chop(
    x: &Tensor,
    scale: i64,
    patch: i64,
    crop_batch: i64,
    fast: bool,
    mut f: impl FnMut(Group, &Tensor) -> Tensor,
) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let p = patch;
    let s = scale;
    // exact: shave = P/2, stride = shave/2; fast: shave = P/4, stride = P − shave
    let (shave, stride) = if fast {
        (p / 4, p - p / 4)
    } else {
        (p / 2, p / 4)
    };
    // every crop keeps [shave/2·s, P·s − shave/2·s)
    let half = shave / 2 * s;
    let h_cut = (h - p) % stride;
    let w_cut = (w - p) % stride;
    let (hp, wp) = ((h - h_cut) * s, (w - w_cut) * s);
    let ps = p * s;
    let ts = stride * s;

    let run =
        |f: &mut dyn FnMut(Group, &Tensor) -> Tensor, g: Group, windows: Vec<Tensor>| -> Tensor {
            let mut outs = Vec::new();
            for chunk in windows.chunks(crop_batch as usize) {
                let y = f(g, &Tensor::cat(chunk, 0));
                outs.push(y.to_device(Device::Cpu).to_kind(Kind::Float));
            }
            Tensor::cat(&outs, 0)
        };
    // F.unfold(x, P, stride) order: row-major over window positions
    let unfold = |t: &Tensor| -> Vec<Tensor> {
        let (th, tw) = (t.size()[2], t.size()[3]);
        let mut v = Vec::new();
        let mut r = 0;
        while r + p <= th {
            let mut c = 0;
            while c + p <= tw {
                v.push(t.narrow(2, r, p).narrow(3, c, p));
                c += stride;
            }
            r += stride;
        }
        v
    };
    let cut_h = |f: &mut dyn FnMut(Group, &Tensor) -> Tensor, g: Group, strip: &Tensor| {
        let y = run(f, g, unfold(strip));
        let out = fold(&y, (ps, wp), (ps, ps), ts);
        let crops = y.narrow(3, half, ps - 2 * half);
        let inner = (ps, wp - shave * s);
        let mut inter = fold(&crops, inner, (ps, ps - 2 * half), ts);
        if !fast {
            inter /= fold(&crops.ones_like(), inner, (ps, ps - 2 * half), ts);
        }
        out.narrow(3, half, wp - 2 * half).copy_(&inter);
        out
    };
    let cut_w = |f: &mut dyn FnMut(Group, &Tensor) -> Tensor, g: Group, strip: &Tensor| {
        let y = run(f, g, unfold(strip));
        let out = fold(&y, (hp, ps), (ps, ps), ts);
        let crops = y.narrow(2, half, ps - 2 * half);
        let inner = (hp - shave * s, ps);
        let mut inter = fold(&crops, inner, (ps - 2 * half, ps), ts);
        if !fast {
            inter /= fold(&crops.ones_like(), inner, (ps - 2 * half, ps), ts);
        }
        out.narrow(2, half, hp - 2 * half).copy_(&inter);
        out
    };

    let f: &mut dyn FnMut(Group, &Tensor) -> Tensor = &mut f;
    let corner = run(
        f,
        Group::Corner,
        vec![x.narrow(2, h - p, p).narrow(3, w - p, p)],
    );
    let bottom = cut_h(f, Group::BottomStrip, &x.narrow(2, h - p, p));
    let right = cut_w(f, Group::RightStrip, &x.narrow(3, w - p, p));
    let top = cut_h(f, Group::TopStrip, &x.narrow(2, 0, p));
    let left = cut_w(f, Group::LeftStrip, &x.narrow(3, 0, p));
    let grid = run(f, Group::MainGrid, unfold(x));

    let y = fold(&grid, (hp, wp), (ps, ps), ts);
    y.narrow(2, 0, ps).copy_(&top);
    y.narrow(3, 0, ps).copy_(&left);
    let crops = grid
        .narrow(2, half, ps - 2 * half)
        .narrow(3, half, ps - 2 * half);
    let inner = (hp - shave * s, wp - shave * s);
    let kernel = (ps - 2 * half, ps - 2 * half);
    let mut inter = fold(&crops, inner, kernel, ts);
    if !fast {
        inter /= fold(&crops.ones_like(), inner, kernel, ts);
    }
    y.narrow(2, half, hp - 2 * half)
        .narrow(3, half, wp - 2 * half)
        .copy_(&inter);

    // int((P − cut)/2·s) and int((P − cut)/2·s + 0.5)
    let cut = |c: i64| ((p - c) * s / 2, ((p - c) * s + 1) / 2);
    let (cut_h_lo, cut_h_hi) = cut(h_cut);
    let (cut_w_lo, cut_w_hi) = cut(w_cut);
    let y = Tensor::cat(
        &[
            y.narrow(2, 0, hp - cut_h_lo),
            bottom.narrow(2, cut_h_hi, ps - cut_h_hi),
        ],
        2,
    );
    let band = Tensor::cat(
        &[
            right.narrow(2, 0, hp - cut_h_lo),
            corner.narrow(2, cut_h_hi, ps - cut_h_hi),
        ],
        2,
    );
    Tensor::cat(
        &[
            y.narrow(3, 0, wp - cut_w_lo),
            band.narrow(3, cut_w_hi, ps - cut_w_hi),
        ],
        3,
    )
}

/// `F.fold` of window outputs `[n, C, kh, kw]` into `[1, C, oh, ow]` (sums where they overlap).
fn fold(crops: &Tensor, out_hw: (i64, i64), kernel: (i64, i64), stride: i64) -> Tensor {
    let n = crops.size()[0];
    crops
        .reshape([n, -1, 1])
        .transpose(0, 2)
        .contiguous()
        .col2im(
            [out_hw.0, out_hw.1],
            [kernel.0, kernel.1],
            [1, 1],
            [0, 0],
            [stride, stride],
        )
}

/// The official `forward_x8`: eight flipped/transposed inputs `[x, v, h, hv, t, tv, th, thv]`,
/// outputs mapped back (transpose if i > 3, H-flip if i mod 4 > 1, W-flip if i mod 4 odd) and
/// averaged with `cat(…).mean(0)`.
pub fn official_x8(x: &Tensor, mut f: impl FnMut(&Tensor) -> Tensor) -> Tensor {
    let v = |t: &Tensor| t.flip([3]);
    let hf = |t: &Tensor| t.flip([2]);
    let tr = |t: &Tensor| t.transpose(2, 3).contiguous();
    let mut xs = vec![x.shallow_clone()];
    for op in 0..3 {
        let more: Vec<Tensor> = xs
            .iter()
            .map(|t| match op {
                0 => v(t),
                1 => hf(t),
                _ => tr(t),
            })
            .collect();
        xs.extend(more);
    }
    let mut ys = Vec::new();
    for (i, xi) in xs.iter().enumerate() {
        let mut y = f(xi);
        if i > 3 {
            y = tr(&y);
        }
        if i % 4 > 1 {
            y = hf(&y);
        }
        if (i % 4) % 2 == 1 {
            y = v(&y);
        }
        ys.push(y);
    }
    Tensor::cat(&ys, 0).mean_dim(0, true, None)
}
