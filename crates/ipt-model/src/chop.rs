//! Whole-image inference by overlapping windows: the official `forward_chop` (`model/__init__.py` of the official PyTorch code).
//!
//! The network only accepts `patch × patch` inputs (48×48 for every released checkpoint), so a
//! whole image is cut into windows, each window is restored, and the window outputs are stitched
//! back. This module reproduces the stitching of the official PyTorch code
//! (`model/__init__.py::forward_chop`, `cut_h`, `cut_w`) rule for rule:
//!
//! * shave `S = patch/2`, stride `T = S/2` (12 px for patch 48), `h_c = (h − P) mod T`,
//!   `H' = h − h_c`, `nh = (h − P) div T + 1` (same for the width);
//! * the model is called on, in this order, the bottom-right **corner** window, the **bottom
//!   strip** `x[h−P.., :]`, the **right strip** `x[:, w−P..]`, the **top strip** `x[..P, :]`, the
//!   **left strip** `x[:, ..P]` and the **main grid** of windows at `(T·i, T·j)`: in total
//!   `nh·nw + 2·nw + 2·nh + 1` windows, in chunks of at most `crop_batch` windows that never mix
//!   two of these groups (as in the official code);
//! * every window contributes its central band (`[T·s, (P−T)·s)`), overlapping bands are averaged
//!   (with the same `col2im` ("fold") calls as the official code, so even the order of the
//!   floating-point additions is the same on CPU), the outer `T·s` pixels of a strip come from its
//!   first/last window;
//! * the main grid takes the top strip in its first `P·s` rows, then the left strip in its first
//!   `P·s` columns, then the averaged interior; the bottom strip and the right band (right strip +
//!   corner) are spliced in at the middle of their overlap, `⌊(P − h_c)·s/2⌋` rows before the end
//!   of `H'·s` (taking the strip from row `⌈(P − h_c)·s/2⌉`), and likewise for the columns.
//!
//! Window outputs are moved to the CPU and assembled there in `f32` (like the official code,
//! which calls `.cpu()` on every model output); only the central crops of the main-grid windows
//! are kept, so memory is about four times the output image.
//!
//! One deliberate extension: an image smaller than the patch in a dimension is reflect-padded at
//! the bottom/right up to the patch size and the output is cropped back (the official code fails
//! on such inputs).

use std::ops::Range;

use tch::{Device, Kind, Tensor};

/// Errors of whole-image inference.
#[derive(Debug, thiserror::Error)]
pub enum ChopError {
    /// The input is not a `[1, C, H, W]` tensor.
    #[error("forward_chop expects a [1, C, H, W] tensor, got shape {0:?}")]
    InputShape(Vec<i64>),
    /// The patch size cannot be tiled the official way.
    #[error("patch size {0} is not supported: it must be a positive multiple of 4 (shave = patch/2, stride = patch/4)")]
    Patch(usize),
    /// The scale is zero.
    #[error("scale must be at least 1")]
    Scale,
    /// The crop batch is zero.
    #[error("crop batch size must be at least 1")]
    CropBatch,
    /// The model returned a tensor of the wrong shape for a batch of windows.
    #[error("the model returned shape {got:?} for a batch of {batch} windows of {patch}×{patch}; expected [{batch}, C, {out}, {out}] (patch × scale)")]
    ModelOutput {
        /// Shape the model returned.
        got: Vec<i64>,
        /// Windows in the batch.
        batch: usize,
        /// Input window side.
        patch: usize,
        /// Expected output window side.
        out: usize,
    },
    /// A libtorch operation failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The six groups of windows of the official tiling, in the order the official code runs them.
///
/// The model function of [`forward_chop_grouped`] is told which group a batch belongs to (used by
/// the tag-map test in `tests/chop.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowGroup {
    /// The single bottom-right window `x[h−P.., w−P..]`.
    Corner,
    /// Windows of the bottom strip `x[h−P.., :]`.
    BottomStrip,
    /// Windows of the right strip `x[:, w−P..]`.
    RightStrip,
    /// Windows of the top strip `x[..P, :]`.
    TopStrip,
    /// Windows of the left strip `x[:, ..P]`.
    LeftStrip,
    /// The main grid of windows at `(T·i, T·j)`.
    MainGrid,
}

impl WindowGroup {
    /// All groups, in the order they are evaluated.
    pub const ALL: [WindowGroup; 6] = [
        WindowGroup::Corner,
        WindowGroup::BottomStrip,
        WindowGroup::RightStrip,
        WindowGroup::TopStrip,
        WindowGroup::LeftStrip,
        WindowGroup::MainGrid,
    ];
}

/// Geometry of the official tiling of an `h × w` input (both at least `patch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChopGeometry {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Window side `P`.
    pub patch: usize,
    /// Output/input scale `s`.
    pub scale: usize,
    /// Grid stride `T = P/4`.
    pub stride: usize,
    /// `h_c = (h − P) mod T`.
    pub h_cut: usize,
    /// `w_c = (w − P) mod T`.
    pub w_cut: usize,
    /// Grid rows `nh = (h − P) div T + 1`.
    pub nh: usize,
    /// Grid columns `nw = (w − P) div T + 1`.
    pub nw: usize,
}

impl ChopGeometry {
    /// The tiling of an `h × w` image with `patch`-sized windows and output scale `scale`.
    /// Sizes below the patch are first padded to the patch (see [`forward_chop`]).
    pub fn new(h: usize, w: usize, patch: usize, scale: usize) -> Result<Self, ChopError> {
        if patch == 0 || !patch.is_multiple_of(4) {
            return Err(ChopError::Patch(patch));
        }
        if scale == 0 {
            return Err(ChopError::Scale);
        }
        let (h, w) = (h.max(patch), w.max(patch));
        let stride = patch / 4;
        Ok(ChopGeometry {
            h,
            w,
            patch,
            scale,
            stride,
            h_cut: (h - patch) % stride,
            w_cut: (w - patch) % stride,
            nh: (h - patch) / stride + 1,
            nw: (w - patch) / stride + 1,
        })
    }

    /// Number of model evaluations: `nh·nw + 2·nw + 2·nh + 1`.
    pub fn window_count(&self) -> usize {
        self.nh * self.nw + 2 * self.nw + 2 * self.nh + 1
    }

    /// Top-left corners (row, column) of the windows of one group, in evaluation order.
    pub fn windows(&self, group: WindowGroup) -> Vec<(usize, usize)> {
        let (t, p) = (self.stride, self.patch);
        let (last_r, last_c) = (self.h - p, self.w - p);
        let rows = (0..self.nh).map(|i| i * t);
        let cols = (0..self.nw).map(|j| j * t);
        match group {
            WindowGroup::Corner => vec![(last_r, last_c)],
            WindowGroup::BottomStrip => cols.map(|c| (last_r, c)).collect(),
            WindowGroup::RightStrip => rows.map(|r| (r, last_c)).collect(),
            WindowGroup::TopStrip => cols.map(|c| (0, c)).collect(),
            WindowGroup::LeftStrip => rows.map(|r| (r, 0)).collect(),
            WindowGroup::MainGrid => rows
                .flat_map(|r| (0..self.nw).map(move |j| (r, j * t)))
                .collect(),
        }
    }
}

/// Number of model evaluations [`forward_chop`] makes for an `h × w` input (after padding small
/// inputs to the patch size).
pub fn window_count(h: usize, w: usize, patch: usize) -> usize {
    let stride = (patch / 4).max(1);
    let (h, w) = (h.max(patch), w.max(patch));
    let nh = (h - patch) / stride + 1;
    let nw = (w - patch) / stride + 1;
    nh * nw + 2 * nw + 2 * nh + 1
}

/// Restore a whole `[1, C, h, w]` image with a model `f` that maps `[b, C, patch, patch]` windows
/// to `[b, C', patch·scale, patch·scale]`, stitching exactly like the official IPT code.
///
/// `f` is called with at most `crop_batch` windows at a time, on the device of `x`; counting the
/// windows it receives gives progress (there are [`window_count`] in total). Runs under
/// `tch::no_grad`. The result is `[1, C', h·scale, w·scale]` `f32` on the device of `x`.
pub fn forward_chop(
    x: &Tensor,
    scale: usize,
    patch: usize,
    crop_batch: usize,
    mut f: impl FnMut(&Tensor) -> Tensor,
) -> Result<Tensor, ChopError> {
    forward_chop_grouped(x, scale, patch, crop_batch, |_, batch| f(batch))
}

/// [`forward_chop`] with a model function that is also told which [`WindowGroup`] a batch of
/// windows belongs to.
pub fn forward_chop_grouped(
    x: &Tensor,
    scale: usize,
    patch: usize,
    crop_batch: usize,
    mut f: impl FnMut(WindowGroup, &Tensor) -> Tensor,
) -> Result<Tensor, ChopError> {
    let size = x.size();
    if size.len() != 4 || size[0] != 1 || size[1] < 1 || size[2] < 1 || size[3] < 1 {
        return Err(ChopError::InputShape(size));
    }
    if crop_batch == 0 {
        return Err(ChopError::CropBatch);
    }
    let (h, w) = (size[2] as usize, size[3] as usize);
    let g = ChopGeometry::new(h, w, patch, scale)?;
    tch::no_grad(|| {
        let padded = reflect_pad_to(x, g.h, g.w)?;
        let y = chop_padded(&padded, &g, crop_batch, &mut f)?;
        let y = y
            .f_narrow(2, 0, (h * scale) as i64)?
            .f_narrow(3, 0, (w * scale) as i64)?;
        Ok(y.f_to_device(x.device())?)
    })
}

/// Reflect-pad `x` at the bottom and right to at least `h × w` (`numpy.pad(mode="reflect")`
/// semantics, repeated as often as needed; a side of length 1 is replicated).
fn reflect_pad_to(x: &Tensor, h: usize, w: usize) -> Result<Tensor, ChopError> {
    let size = x.size();
    let mut out = x.shallow_clone();
    for (dim, target) in [(2usize, h), (3usize, w)] {
        let n = size[dim] as usize;
        if n >= target {
            continue;
        }
        let idx: Vec<i64> = (0..target).map(|i| reflect_index(i, n) as i64).collect();
        let idx = Tensor::from_slice(&idx).to_device(x.device());
        out = out.f_index_select(dim as i64, &idx)?;
    }
    Ok(out)
}

/// Source index of position `i` when a length-`n` axis is extended by mirror reflection without
/// repeating the edge sample (`… 2 1 | 0 1 2 … n−1 | n−2 …`).
fn reflect_index(i: usize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i % period;
    if m < n {
        m
    } else {
        period - m
    }
}

/// Run `f` on the windows of one group, keep `crop` of each output window, and return the kept
/// parts stacked as `[n, C', kh, kw]` `f32` on the CPU.
fn run_group(
    x: &Tensor,
    g: &ChopGeometry,
    group: WindowGroup,
    crop_batch: usize,
    crop: (Range<i64>, Range<i64>),
    f: &mut impl FnMut(WindowGroup, &Tensor) -> Tensor,
) -> Result<Tensor, ChopError> {
    let p = g.patch as i64;
    let out = (g.patch * g.scale) as i64;
    let positions = g.windows(group);
    let mut kept = Vec::with_capacity(positions.len().div_ceil(crop_batch));
    for chunk in positions.chunks(crop_batch) {
        let windows = chunk
            .iter()
            .map(|&(r, c)| x.f_narrow(2, r as i64, p)?.f_narrow(3, c as i64, p))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = Tensor::f_cat(&windows, 0)?;
        let y = f(group, &batch);
        let ys = y.size();
        if ys.len() != 4 || ys[0] != chunk.len() as i64 || ys[1] < 1 || ys[2] != out || ys[3] != out
        {
            return Err(ChopError::ModelOutput {
                got: ys,
                batch: chunk.len(),
                patch: g.patch,
                out: out as usize,
            });
        }
        let y = y
            .f_narrow(2, crop.0.start, crop.0.end - crop.0.start)?
            .f_narrow(3, crop.1.start, crop.1.end - crop.1.start)?
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?;
        kept.push(y);
    }
    Ok(Tensor::f_cat(&kept, 0)?)
}

/// `F.fold` of window crops `[n, C, kh, kw]` into `[1, C, oh, ow]` with stride `stride` (sums
/// where windows overlap), exactly as the official code calls it.
fn fold(
    crops: &Tensor,
    out_hw: (i64, i64),
    kernel: (i64, i64),
    stride: i64,
) -> Result<Tensor, ChopError> {
    let n = crops.size()[0];
    let cols = crops
        .f_reshape([n, -1, 1])?
        .f_transpose(0, 2)?
        .f_contiguous()?;
    Ok(cols.f_col2im(
        [out_hw.0, out_hw.1],
        [kernel.0, kernel.1],
        [1, 1],
        [0, 0],
        [stride, stride],
    )?)
}

/// Mean of overlapping window crops: fold of the crops divided by the fold of ones (the number of
/// windows covering each pixel), as the official code computes it.
fn fold_mean(
    crops: &Tensor,
    out_hw: (i64, i64),
    kernel: (i64, i64),
    stride: i64,
) -> Result<Tensor, ChopError> {
    let sum = fold(crops, out_hw, kernel, stride)?;
    let count = fold(&crops.f_ones_like()?, out_hw, kernel, stride)?;
    Ok(sum.f_div(&count)?)
}

/// Copy `src` into the block of `dst` starting at (`row`, `col`) in the last two dimensions.
fn put(dst: &Tensor, row: i64, col: i64, src: &Tensor) -> Result<(), ChopError> {
    let s = src.size();
    let (sh, sw) = (s[s.len() - 2], s[s.len() - 1]);
    let mut view = dst.f_narrow(2, row, sh)?.f_narrow(3, col, sw)?;
    view.f_copy_(src)?;
    Ok(())
}

/// Assemble a horizontal strip (`[1, C, P·s, W'·s]`) from its window outputs `[nw, C, P·s, P·s]`
/// (the official `cut_h`): edge columns from the first/last window, the rest the mean of the
/// central column bands.
fn assemble_row_strip(y: &Tensor, g: &ChopGeometry) -> Result<Tensor, ChopError> {
    let s = g.scale as i64;
    let (ps, ts) = (g.patch as i64 * s, g.stride as i64 * s);
    let wp = (g.w - g.w_cut) as i64 * s;
    let n = y.size()[0];
    let c = y.size()[1];
    let out = Tensor::f_zeros([1, c, ps, wp], (Kind::Float, Device::Cpu))?;
    put(&out, 0, 0, &y.f_narrow(0, 0, 1)?.f_narrow(3, 0, ts)?)?;
    put(
        &out,
        0,
        wp - ts,
        &y.f_narrow(0, n - 1, 1)?.f_narrow(3, ps - ts, ts)?,
    )?;
    let central = y.f_narrow(3, ts, ps - 2 * ts)?;
    let inter = fold_mean(&central, (ps, wp - 2 * ts), (ps, ps - 2 * ts), ts)?;
    put(&out, 0, ts, &inter)?;
    Ok(out)
}

/// Assemble a vertical strip (`[1, C, H'·s, P·s]`) from its window outputs (the official `cut_w`).
fn assemble_col_strip(y: &Tensor, g: &ChopGeometry) -> Result<Tensor, ChopError> {
    let s = g.scale as i64;
    let (ps, ts) = (g.patch as i64 * s, g.stride as i64 * s);
    let hp = (g.h - g.h_cut) as i64 * s;
    let n = y.size()[0];
    let c = y.size()[1];
    let out = Tensor::f_zeros([1, c, hp, ps], (Kind::Float, Device::Cpu))?;
    put(&out, 0, 0, &y.f_narrow(0, 0, 1)?.f_narrow(2, 0, ts)?)?;
    put(
        &out,
        hp - ts,
        0,
        &y.f_narrow(0, n - 1, 1)?.f_narrow(2, ps - ts, ts)?,
    )?;
    let central = y.f_narrow(2, ts, ps - 2 * ts)?;
    let inter = fold_mean(&central, (hp - 2 * ts, ps), (ps - 2 * ts, ps), ts)?;
    put(&out, ts, 0, &inter)?;
    Ok(out)
}

/// The official tiling of an input that is at least `patch` in both dimensions.
fn chop_padded(
    x: &Tensor,
    g: &ChopGeometry,
    crop_batch: usize,
    f: &mut impl FnMut(WindowGroup, &Tensor) -> Tensor,
) -> Result<Tensor, ChopError> {
    let s = g.scale as i64;
    let (ps, ts) = (g.patch as i64 * s, g.stride as i64 * s);
    let (hp, wp) = ((g.h - g.h_cut) as i64 * s, (g.w - g.w_cut) as i64 * s);
    let full = (0..ps, 0..ps);
    let centre = (ts..ps - ts, ts..ps - ts);

    let corner = run_group(x, g, WindowGroup::Corner, crop_batch, full.clone(), f)?;
    let bottom = run_group(x, g, WindowGroup::BottomStrip, crop_batch, full.clone(), f)?;
    let bottom = assemble_row_strip(&bottom, g)?;
    let right = run_group(x, g, WindowGroup::RightStrip, crop_batch, full.clone(), f)?;
    let right = assemble_col_strip(&right, g)?;
    let top = run_group(x, g, WindowGroup::TopStrip, crop_batch, full.clone(), f)?;
    let top = assemble_row_strip(&top, g)?;
    let left = run_group(x, g, WindowGroup::LeftStrip, crop_batch, full, f)?;
    let left = assemble_col_strip(&left, g)?;
    let grid = run_group(x, g, WindowGroup::MainGrid, crop_batch, centre, f)?;

    // Main grid G: top strip, then left strip, then the averaged interior.
    let c = grid.size()[1];
    let main = Tensor::f_zeros([1, c, hp, wp], (Kind::Float, Device::Cpu))?;
    put(&main, 0, 0, &top)?;
    put(&main, 0, 0, &left)?;
    let inter = fold_mean(
        &grid,
        (hp - 2 * ts, wp - 2 * ts),
        (ps - 2 * ts, ps - 2 * ts),
        ts,
    )?;
    put(&main, ts, ts, &inter)?;

    // Splices at the middle of the overlaps with the bottom strip and the right band.
    let (cut_h, skip_h) = half_overlap(g.patch - g.h_cut, g.scale);
    let (cut_w, skip_w) = half_overlap(g.patch - g.w_cut, g.scale);
    let rows = Tensor::f_cat(
        &[
            main.f_narrow(2, 0, hp - cut_h)?,
            bottom.f_narrow(2, skip_h, ps - skip_h)?,
        ],
        2,
    )?;
    let band = Tensor::f_cat(
        &[
            right.f_narrow(2, 0, hp - cut_h)?,
            corner.f_narrow(2, skip_h, ps - skip_h)?,
        ],
        2,
    )?;
    Ok(Tensor::f_cat(
        &[
            rows.f_narrow(3, 0, wp - cut_w)?,
            band.f_narrow(3, skip_w, ps - skip_w)?,
        ],
        3,
    )?)
}

/// `(⌊a⌋, ⌈a⌉)` for `a = overlap·scale/2`: the official `int((P − cut)/2·s)` and
/// `int((P − cut)/2·s + 0.5)`.
fn half_overlap(overlap: usize, scale: usize) -> (i64, i64) {
    let twice = (overlap * scale) as i64;
    (twice / 2, (twice + 1) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_index_mirrors_without_repeating_the_edge() {
        let got: Vec<usize> = (0..10).map(|i| reflect_index(i, 4)).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 2, 1, 0, 1, 2, 3]);
        assert_eq!(reflect_index(5, 1), 0);
    }

    #[test]
    fn half_overlap_matches_python_int_rounding() {
        // int((48-5)/2*3) = int(64.5) = 64, int(64.5 + 0.5) = 65
        assert_eq!(half_overlap(43, 3), (64, 65));
        assert_eq!(half_overlap(44, 1), (22, 22));
        assert_eq!(half_overlap(43, 1), (21, 22));
    }

    #[test]
    fn geometry_of_the_spec_example() {
        let g = ChopGeometry::new(100, 77, 48, 1).unwrap();
        assert_eq!((g.h_cut, g.w_cut, g.nh, g.nw), (4, 5, 5, 3));
        assert_eq!(g.window_count(), 15 + 6 + 10 + 1);
        assert_eq!(window_count(321, 481, 48), 972);
        assert_eq!(window_count(48, 48, 48), 6);
        assert!(matches!(
            ChopGeometry::new(48, 48, 30, 1),
            Err(ChopError::Patch(30))
        ));
    }
}
