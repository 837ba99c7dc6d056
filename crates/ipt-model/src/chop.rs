//! Whole-image inference by overlapping windows: the official `forward_chop`, streamed band by
//! band.
//!
//! The network only accepts `patch × patch` inputs (48×48 for every released checkpoint), so a
//! whole image is cut into windows, each window is restored, and the window outputs are stitched
//! back. The stitching is that of the official PyTorch code (`model/__init__.py::forward_chop`,
//! `cut_h`, `cut_w`) — or, in [`ChopMode::Fast`], of its second variant `forward_chop_new`
//! (`cut_h_new`, `cut_w_new`) — rule for rule:
//!
//! * window side `P`, stride `T` (exact: `P/4`, 12 px for `P = 48`; fast: `P − P/4`, 36 px) and
//!   margin `m` (exact: `P/4`; fast: `P/8`, the official `shave/2`); per axis `h_c = (h − P) mod T`,
//!   `H' = h − h_c`, `nh = (h − P) div T + 1` (same for the width);
//! * the official code evaluates the bottom-right corner window, the bottom strip `x[h−P.., :]`,
//!   the right strip `x[:, w−P..]`, the top strip `x[..P, :]`, the left strip `x[:, ..P]` and the
//!   main grid of windows at `(T·i, T·j)`;
//! * inside a strip or the main grid every window contributes its central band `[m·s, (P−m)·s)`
//!   and overlapping bands are averaged (the official fold of the crops divided by the fold of
//!   ones; in fast mode the bands tile without overlap); the outer `m·s` pixels of a strip come
//!   from its first/last window;
//! * the main grid takes the top strip in its first `P·s` rows, then the left strip in its first
//!   `P·s` columns, then the averaged interior `[m·s, H'·s − m·s)`; the bottom strip and the right
//!   band (right strip + corner) are spliced in at the middle of their overlap,
//!   `⌊(P − h_c)·s/2⌋` rows before the end of `H'·s` (taking the strip from row
//!   `⌈(P − h_c)·s/2⌉`), and likewise for the columns.
//!
//! Written out per output pixel `(r, c)` this is one rule, which this module implements: the
//! pixel is the mean, over the windows `(a, b)` in `A(r) × B(c)`, of window output `(a, b)` at
//! `(r − a·s, c − b·s)`, where along each axis
//!
//! * the first `m·s` coordinates take the first window (`{0}`),
//! * the coordinates from the splice point on take the last window (`{h − P}`),
//! * the others take every grid window whose central band covers them;
//!
//! except that in the first `m·s` rows the first window supplies the first `P·s` columns (the
//! left strip written over the top strip). The top and left strips are made of main-grid windows,
//! and the bottom strip, right strip and corner repeat main-grid windows whenever `h_c = 0` or
//! `w_c = 0`, so every distinct window is evaluated **once**: the windows are the grid rows
//! `{T·i} ∪ {h − P}` times the grid columns `{T·j} ∪ {w − P}` (e.g. 1 instead of 6 for a
//! 48×48 input, 64 instead of 78 for 128×128), with the same output as the official code (up to
//! the float rounding of batched kernels and of the order of the additions).
//!
//! **Streaming.** Windows are evaluated band by band (a band is one row of windows, at one input
//! row `a`), at most `crop_batch` per model call, on the device of the input; each output is
//! moved to the CPU as `f32` (like the official `.cpu()`) and added into the output rows it
//! supplies; rows that no later band supplies are divided by their window counts and handed
//! out. Memory is therefore the output image plus a few bands of rows and one batch of windows,
//! whatever the image size ([`Chop::stream`] hands the finished rows to a callback,
//! [`forward_chop`] / [`Chop::run`] collect them into one tensor).
//!
//! One deliberate extension: an image smaller than the patch in a dimension is reflect-padded at
//! the bottom/right up to the patch size and the output is cropped back (the official code fails
//! on such inputs).

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use tch::{Device, Kind, Tensor};

/// Errors of whole-image inference.
#[derive(Debug, thiserror::Error)]
pub enum ChopError {
    /// The input is not a `[1, C, H, W]` tensor.
    #[error("forward_chop expects a [1, C, H, W] tensor, got shape {0:?}")]
    InputShape(Vec<i64>),
    /// The patch size cannot be tiled in this mode.
    #[error("patch size {patch} cannot be tiled in {mode} mode: it must be a positive multiple of {}", mode.patch_multiple())]
    Patch {
        /// The patch size.
        patch: usize,
        /// The window mode.
        mode: ChopMode,
    },
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

/// How densely windows are laid over the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ChopMode {
    /// The official `forward_chop`: stride `P/4`, every interior pixel the mean of the central
    /// bands of 2×2 to 4×4 windows (each input pixel is seen by 16 windows). The default, and
    /// what every benchmark uses.
    #[default]
    Exact,
    /// The official second variant `forward_chop_new`: stride `P − P/4` (36 px for `P = 48`),
    /// every pixel from the central `3P/4` of exactly one window (a `P/8` margin is discarded);
    /// about 9× fewer windows. Needs `P` divisible by 8.
    Fast,
}

impl ChopMode {
    /// Grid stride `T` for windows of side `patch`.
    pub fn stride(self, patch: usize) -> usize {
        match self {
            ChopMode::Exact => patch / 4,
            ChopMode::Fast => patch - patch / 4,
        }
    }

    /// Margin `m`: a window contributes its central band `[m, patch − m)` (times the scale).
    pub fn margin(self, patch: usize) -> usize {
        match self {
            ChopMode::Exact => patch / 4,
            ChopMode::Fast => patch / 8,
        }
    }

    /// The patch size must be a positive multiple of this.
    pub fn patch_multiple(self) -> usize {
        match self {
            ChopMode::Exact => 4,
            ChopMode::Fast => 8,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ChopMode::Exact => "exact",
            ChopMode::Fast => "fast",
        }
    }
}

impl fmt::Display for ChopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown [`ChopMode`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown window mode {0:?}: expected exact or fast")]
pub struct ParseChopModeError(pub String);

impl FromStr for ChopMode {
    type Err = ParseChopModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exact" => Ok(ChopMode::Exact),
            "fast" => Ok(ChopMode::Fast),
            _ => Err(ParseChopModeError(s.to_string())),
        }
    }
}

/// Geometry of the tiling of an `h × w` input (both at least `patch`): its two axes, rows and
/// columns, each tiled by the same rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChopGeometry {
    rows: Axis,
    cols: Axis,
    mode: ChopMode,
}

impl ChopGeometry {
    /// The tiling of an `h × w` image with `patch`-sized windows, output scale `scale` and window
    /// mode `mode`. Sizes below the patch are first padded to the patch (see [`forward_chop`]).
    pub fn new(
        h: usize,
        w: usize,
        patch: usize,
        scale: usize,
        mode: ChopMode,
    ) -> Result<Self, ChopError> {
        if patch == 0 || !patch.is_multiple_of(mode.patch_multiple()) {
            return Err(ChopError::Patch { patch, mode });
        }
        if scale == 0 {
            return Err(ChopError::Scale);
        }
        Ok(ChopGeometry {
            rows: Axis::new(h, patch, scale, mode),
            cols: Axis::new(w, patch, scale, mode),
            mode,
        })
    }

    /// Input height (padded to the patch).
    pub fn h(&self) -> usize {
        self.rows.n
    }

    /// Input width (padded to the patch).
    pub fn w(&self) -> usize {
        self.cols.n
    }

    /// Window side `P`.
    pub fn patch(&self) -> usize {
        self.rows.patch
    }

    /// Output/input scale `s`.
    pub fn scale(&self) -> usize {
        self.rows.scale
    }

    /// Window mode.
    pub fn mode(&self) -> ChopMode {
        self.mode
    }

    /// Grid stride `T` ([`ChopMode::stride`]).
    pub fn stride(&self) -> usize {
        self.rows.stride
    }

    /// Margin `m` ([`ChopMode::margin`]).
    pub fn margin(&self) -> usize {
        self.rows.margin
    }

    /// `h_c = (h − P) mod T`.
    pub fn h_cut(&self) -> usize {
        self.rows.cut()
    }

    /// `w_c = (w − P) mod T`.
    pub fn w_cut(&self) -> usize {
        self.cols.cut()
    }

    /// Grid rows `nh = (h − P) div T + 1`.
    pub fn nh(&self) -> usize {
        self.rows.grid()
    }

    /// Grid columns `nw = (w − P) div T + 1`.
    pub fn nw(&self) -> usize {
        self.cols.grid()
    }

    /// Input rows at which windows start, ascending: the grid rows `T·i`, then `h − P` when it
    /// is not on the grid.
    pub fn window_rows(&self) -> Vec<usize> {
        self.rows.positions()
    }

    /// Input columns at which windows start, ascending (as [`window_rows`](Self::window_rows)).
    pub fn window_cols(&self) -> Vec<usize> {
        self.cols.positions()
    }

    /// Top-left corners (row, column) of every window, band by band (row-major): the order in
    /// which the model sees them.
    pub fn windows(&self) -> Vec<(usize, usize)> {
        let cols = self.window_cols();
        self.window_rows()
            .into_iter()
            .flat_map(|r| cols.iter().map(move |&c| (r, c)))
            .collect()
    }

    /// Number of model evaluations: (`nh` + 1 if `h_c > 0`) × (`nw` + 1 if `w_c > 0`). The
    /// official code makes `nh·nw + 2·nw + 2·nh + 1`, evaluating the top and left strips (and,
    /// when a cut is 0, the bottom or right strip) twice.
    pub fn window_count(&self) -> usize {
        self.rows.positions().len() * self.cols.positions().len()
    }
}

/// Where the values of a stretch of one output axis come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The first window (input position 0).
    First,
    /// The mean of the grid windows whose central band covers the coordinate.
    Centres,
    /// The last window (input position `n − P`).
    Last,
}

/// One axis (rows or columns) of the tiling: input length `n ≥ patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Axis {
    n: usize,
    patch: usize,
    stride: usize,
    margin: usize,
    scale: usize,
}

impl Axis {
    /// The axis of an input of length `n` (padded to `patch`), with the stride and margin of
    /// `mode`. The stride is at least 1 even for a patch that [`ChopGeometry::new`] refuses, so
    /// that [`Chop::max_pending`] is defined for every patch.
    fn new(n: usize, patch: usize, scale: usize, mode: ChopMode) -> Self {
        Axis {
            n: n.max(patch),
            patch,
            stride: mode.stride(patch).max(1),
            margin: mode.margin(patch),
            scale,
        }
    }

    fn cut(&self) -> usize {
        (self.n - self.patch) % self.stride
    }

    fn grid(&self) -> usize {
        (self.n - self.patch) / self.stride + 1
    }

    fn last(&self) -> usize {
        self.n - self.patch
    }

    fn out_len(&self) -> usize {
        self.n * self.scale
    }

    /// Window starts, ascending, each once.
    fn positions(&self) -> Vec<usize> {
        let mut p: Vec<usize> = (0..self.grid()).map(|k| k * self.stride).collect();
        if self.cut() != 0 {
            p.push(self.last());
        }
        p
    }

    /// First output coordinate taken from the last window (bottom strip / right band): the
    /// official `(n − c)·s − int((P − c)/2·s)`.
    fn splice(&self) -> usize {
        let cut = self.cut();
        (self.n - cut) * self.scale - (self.patch - cut) * self.scale / 2
    }

    /// The output axis split by source; the first `first` coordinates come from the first window
    /// (`m·s`, or `P·s` for the columns of the first `m·s` rows, where the left strip was written
    /// over the top strip).
    fn segments(&self, first: usize) -> [(Range<usize>, Source); 3] {
        let splice = self.splice();
        let first = first.min(splice);
        [
            (0..first, Source::First),
            (first..splice, Source::Centres),
            (splice..self.out_len(), Source::Last),
        ]
    }

    /// The coordinates of `range` (of source `src`) that the window starting at input position
    /// `p` supplies (empty if none).
    fn supplied(&self, p: usize, range: &Range<usize>, src: Source) -> Range<usize> {
        let s = self.scale;
        match src {
            Source::First if p == 0 => range.clone(),
            Source::Last if p == self.last() => range.clone(),
            Source::Centres if p.is_multiple_of(self.stride) && p / self.stride < self.grid() => {
                let lo = (p + self.margin) * s;
                let hi = (p + self.patch - self.margin) * s;
                lo.max(range.start)..hi.min(range.end)
            }
            _ => 0..0,
        }
    }

    /// How many windows supply each output coordinate (the official divisor along this axis).
    fn counts(&self, first: usize) -> Vec<f32> {
        let mut counts = vec![0f32; self.out_len()];
        for p in self.positions() {
            for (range, src) in self.segments(first) {
                for x in self.supplied(p, &range, src) {
                    counts[x] += 1.0;
                }
            }
        }
        counts
    }

    /// For each output coordinate, the largest window start that supplies it.
    fn last_supplier(&self, first: usize) -> Vec<usize> {
        let mut last = vec![0usize; self.out_len()];
        for p in self.positions() {
            for (range, src) in self.segments(first) {
                for x in self.supplied(p, &range, src) {
                    last[x] = p;
                }
            }
        }
        last
    }

    /// Most window starts along this axis: the grid and the last window (`grid + 1`), an upper
    /// bound of `positions().len()`.
    fn max_positions(&self) -> usize {
        self.grid() + 1
    }

    /// Most output coordinates of this axis (rows) held pending while the windows of `bands`
    /// consecutive bands are summed: from the oldest unfinished row (at most `2P` input rows
    /// above the newest band's end) to the end of the newest band, one stride per band, capped
    /// at the output length.
    fn max_pending(&self, bands: usize) -> usize {
        ((2 * self.patch + bands * self.stride) * self.scale).min(self.out_len())
    }

    /// End of the output coordinates that the window starting at `p` supplies.
    fn supplied_end(&self, p: usize, first: usize) -> usize {
        self.segments(first)
            .iter()
            .map(|(range, src)| self.supplied(p, range, *src))
            .filter(|r| !r.is_empty())
            .map(|r| r.end)
            .max()
            .unwrap_or(0)
    }
}

/// Accumulates window outputs into the output rows they supply and releases the rows that no
/// later band supplies, divided by their window counts.
struct Assembler {
    rows: Axis,
    cols: Axis,
    /// Output rows that use the top column rule (the first window supplies `P·s` columns).
    top_rows: usize,
    row_segments: [(Range<usize>, Source); 3],
    col_segments: [(Range<usize>, Source); 3],
    top_col_segments: [(Range<usize>, Source); 3],
    row_counts: Vec<f32>,
    col_counts: Tensor,
    top_col_counts: Tensor,
    /// Per output row, the input row of the last band that supplies it.
    last_band: Vec<usize>,
    /// Sums of output rows `done..done + len` (`[C, len, W·s]`), once the channels are known.
    pending: Option<Tensor>,
    /// Output rows already released.
    done: usize,
}

impl Assembler {
    fn new(g: &ChopGeometry) -> Self {
        let (rows, cols) = (g.rows, g.cols);
        let top_rows = g.margin() * g.scale();
        let first_cols = g.patch() * g.scale();
        let counts = |v: Vec<f32>| Tensor::from_slice(&v).view([1, 1, -1]);
        Assembler {
            rows,
            cols,
            top_rows,
            row_segments: rows.segments(top_rows),
            col_segments: cols.segments(top_rows),
            top_col_segments: cols.segments(first_cols),
            row_counts: rows.counts(top_rows),
            col_counts: counts(cols.counts(top_rows)),
            top_col_counts: counts(cols.counts(first_cols)),
            last_band: rows.last_supplier(top_rows),
            pending: None,
            done: 0,
        }
    }

    /// Most output rows and columns held pending while a batch of `crop_batch` windows is
    /// added: the batch spans at most `crop_batch / (windows per band)` bands, plus one begun
    /// before it ([`Axis::max_pending`]).
    fn max_pending(rows: &Axis, cols: &Axis, crop_batch: usize) -> (usize, usize) {
        let bands = crop_batch.div_ceil(cols.max_positions()) + 1;
        (rows.max_pending(bands), cols.out_len())
    }

    /// End of the output rows that the band at input row `a` supplies.
    fn band_end(&self, a: usize) -> usize {
        self.rows.supplied_end(a, self.top_rows)
    }

    /// Make the pending rows reach output row `end` (zero-filled).
    fn reserve(&mut self, channels: i64, end: usize) -> Result<(), ChopError> {
        let width = self.cols.out_len() as i64;
        let have = match &self.pending {
            Some(p) => p.size()[1] as usize,
            None => 0,
        };
        let want = end.saturating_sub(self.done);
        if want <= have && self.pending.is_some() {
            return Ok(());
        }
        let extra = Tensor::f_zeros(
            [channels, (want - have) as i64, width],
            (Kind::Float, Device::Cpu),
        )?;
        self.pending = Some(match self.pending.take() {
            Some(p) => Tensor::f_cat(&[p, extra], 1)?,
            None => extra,
        });
        Ok(())
    }

    /// Add the output `y` (`[C, P·s, P·s]`, CPU, f32) of the window at input `(a, b)`.
    fn add(&mut self, (a, b): (usize, usize), y: &Tensor) -> Result<(), ChopError> {
        let pending = self
            .pending
            .as_ref()
            .expect("rows are reserved before windows are added");
        let s = self.rows.scale;
        for (row_range, row_src) in &self.row_segments {
            let rr = self.rows.supplied(a, row_range, *row_src);
            if rr.is_empty() {
                continue;
            }
            let col_segments = if *row_src == Source::First {
                &self.top_col_segments
            } else {
                &self.col_segments
            };
            for (col_range, col_src) in col_segments {
                let cc = self.cols.supplied(b, col_range, *col_src);
                if cc.is_empty() {
                    continue;
                }
                let (nr, nc) = (rr.len() as i64, cc.len() as i64);
                let mut dst = pending
                    .f_narrow(1, (rr.start - self.done) as i64, nr)?
                    .f_narrow(2, cc.start as i64, nc)?;
                let src = y.f_narrow(1, (rr.start - a * s) as i64, nr)?.f_narrow(
                    2,
                    (cc.start - b * s) as i64,
                    nc,
                )?;
                let _ = dst.f_add_(&src)?;
            }
        }
        Ok(())
    }

    /// Release the rows whose last band comes before `next_band` (all rows when `None`), as
    /// `(first output row, [C, n, W·s] means)` blocks, in order.
    fn release(&mut self, next_band: Option<usize>) -> Result<Vec<(usize, Tensor)>, ChopError> {
        let total = self.rows.out_len();
        let end = match next_band {
            Some(next) => (self.done..total)
                .find(|&r| self.last_band[r] >= next)
                .unwrap_or(total),
            None => total,
        };
        if end <= self.done {
            return Ok(Vec::new());
        }
        let pending = self
            .pending
            .take()
            .expect("rows are reserved before they are released");
        let mut blocks = Vec::with_capacity(2);
        let split = self.top_rows.clamp(self.done, end);
        for (range, col_counts) in [
            (self.done..split, &self.top_col_counts),
            (split..end, &self.col_counts),
        ] {
            if range.is_empty() {
                continue;
            }
            let n = range.len() as i64;
            let sums = pending.f_narrow(1, (range.start - self.done) as i64, n)?;
            let rows = Tensor::from_slice(&self.row_counts[range.clone()]).view([1, n, 1]);
            let counts = rows.f_mul(col_counts)?;
            blocks.push((range.start, sums.f_div(&counts)?));
        }
        let released = (end - self.done) as i64;
        let left = pending.size()[1] - released;
        self.pending = Some(pending.f_narrow(1, released, left)?);
        self.done = end;
        Ok(blocks)
    }
}

/// Whole-image inference settings: scale, window side, mode and windows per model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chop {
    /// Output/input scale of the model.
    pub scale: usize,
    /// Window side the model accepts.
    pub patch: usize,
    /// Window mode.
    pub mode: ChopMode,
    /// Windows per model call (the official `--crop_batch_size`).
    pub crop_batch: usize,
}

impl Chop {
    /// The tiling of an `h × w` input.
    pub fn geometry(&self, h: usize, w: usize) -> Result<ChopGeometry, ChopError> {
        ChopGeometry::new(h, w, self.patch, self.scale, self.mode)
    }

    /// Most output `(rows, columns)` the stream of an `h × w` input holds being summed at once
    /// (per channel, besides the finished output): the bound of the band-by-band assembly.
    /// Defined for every patch and scale, also those [`geometry`](Self::geometry) refuses.
    pub fn max_pending(&self, h: usize, w: usize) -> (usize, usize) {
        let rows = Axis::new(h, self.patch, self.scale, self.mode);
        let cols = Axis::new(w, self.patch, self.scale, self.mode);
        Assembler::max_pending(&rows, &cols, self.crop_batch)
    }

    /// Restore a whole `[1, C, h, w]` image with a model `f` that maps `[b, C, patch, patch]`
    /// windows to `[b, C', patch·scale, patch·scale]`, handing the finished output rows to
    /// `sink` as `(first row, [C', n, w·scale] f32 CPU tensor)`, top to bottom, each row once.
    ///
    /// `f` is called with at most `crop_batch` windows at a time, on the device of `x`, band by
    /// band; counting the windows it receives gives progress (there are
    /// [`ChopGeometry::window_count`] in total). Runs under `tch::no_grad`.
    pub fn stream<E: From<ChopError>>(
        &self,
        x: &Tensor,
        mut f: impl FnMut(&Tensor) -> Tensor,
        mut sink: impl FnMut(usize, &Tensor) -> Result<(), E>,
    ) -> Result<(), E> {
        let size = x.size();
        if size.len() != 4 || size[0] != 1 || size[1] < 1 || size[2] < 1 || size[3] < 1 {
            return Err(ChopError::InputShape(size).into());
        }
        if self.crop_batch == 0 {
            return Err(ChopError::CropBatch.into());
        }
        let (h, w) = (size[2] as usize, size[3] as usize);
        let g = self.geometry(h, w)?;
        let (out_h, out_w) = ((h * self.scale) as i64, (w * self.scale) as i64);
        tch::no_grad(|| {
            let padded = reflect_pad_to(x, g.h(), g.w())?;
            let windows = g.windows();
            let mut asm = Assembler::new(&g);
            let (p, out) = (g.patch() as i64, (g.patch() * g.scale()) as i64);
            for (k, chunk) in windows.chunks(self.crop_batch).enumerate() {
                let batch = chunk
                    .iter()
                    .map(|&(r, c)| padded.f_narrow(2, r as i64, p)?.f_narrow(3, c as i64, p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ChopError::from)?;
                let batch = Tensor::f_cat(&batch, 0).map_err(ChopError::from)?;
                let y = f(&batch);
                let ys = y.size();
                if ys.len() != 4
                    || ys[0] != chunk.len() as i64
                    || ys[1] < 1
                    || ys[2] != out
                    || ys[3] != out
                {
                    return Err(ChopError::ModelOutput {
                        got: ys,
                        batch: chunk.len(),
                        patch: g.patch(),
                        out: out as usize,
                    }
                    .into());
                }
                let y = y
                    .f_to_device(Device::Cpu)
                    .and_then(|y| y.f_to_kind(Kind::Float))
                    .map_err(ChopError::from)?;
                if asm.pending.as_ref().is_some_and(|t| t.size()[0] != ys[1]) {
                    // the channel count changed between calls
                    return Err(ChopError::ModelOutput {
                        got: ys,
                        batch: chunk.len(),
                        patch: g.patch(),
                        out: out as usize,
                    }
                    .into());
                }
                let end = chunk
                    .iter()
                    .map(|&(a, _)| asm.band_end(a))
                    .max()
                    .unwrap_or(0);
                asm.reserve(ys[1], end)?;
                for (i, &window) in chunk.iter().enumerate() {
                    let yi = y.f_select(0, i as i64).map_err(ChopError::from)?;
                    asm.add(window, &yi)?;
                }
                let next_band = windows.get((k + 1) * self.crop_batch).map(|&(a, _)| a);
                for (row, block) in asm.release(next_band)? {
                    let row = row as i64;
                    if row >= out_h {
                        continue;
                    }
                    let n = block.size()[1].min(out_h - row);
                    let block = block
                        .f_narrow(1, 0, n)
                        .and_then(|b| b.f_narrow(2, 0, out_w))
                        .map_err(ChopError::from)?;
                    sink(row as usize, &block)?;
                }
            }
            Ok(())
        })
    }

    /// [`stream`](Self::stream) collected into one `[1, C', h·scale, w·scale]` `f32` tensor on
    /// the device of `x`.
    pub fn run(&self, x: &Tensor, f: impl FnMut(&Tensor) -> Tensor) -> Result<Tensor, ChopError> {
        let size = x.size();
        let out_hw = if size.len() == 4 {
            [size[2] * self.scale as i64, size[3] * self.scale as i64]
        } else {
            [0, 0]
        };
        let mut out: Option<Tensor> = None;
        self.stream(x, f, |row, block: &Tensor| -> Result<(), ChopError> {
            let channels = block.size()[0];
            if out.is_none() {
                out = Some(Tensor::f_zeros(
                    [1, channels, out_hw[0], out_hw[1]],
                    (Kind::Float, Device::Cpu),
                )?);
            }
            let out = out.as_ref().expect("allocated above");
            let mut dst = out
                .f_select(0, 0)?
                .f_narrow(1, row as i64, block.size()[1])?;
            dst.f_copy_(block)?;
            Ok(())
        })?;
        let out = out.expect("the stream hands out every row of a non-empty image");
        Ok(out.f_to_device(x.device())?)
    }
}

/// Restore a whole `[1, C, h, w]` image with a model `f` that maps `[b, C, patch, patch]` windows
/// to `[b, C', patch·scale, patch·scale]`, stitching like the official IPT code
/// ([`ChopMode::Exact`]).
///
/// `f` is called with at most `crop_batch` windows at a time, on the device of `x`; counting the
/// windows it receives gives progress. Runs under `tch::no_grad`. The result is
/// `[1, C', h·scale, w·scale]` `f32` on the device of `x`. See [`Chop`] for the fast mode and for
/// streaming the rows.
pub fn forward_chop(
    x: &Tensor,
    scale: usize,
    patch: usize,
    crop_batch: usize,
    f: impl FnMut(&Tensor) -> Tensor,
) -> Result<Tensor, ChopError> {
    Chop {
        scale,
        patch,
        mode: ChopMode::Exact,
        crop_batch,
    }
    .run(x, f)
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
    fn splice_matches_python_int_rounding() {
        // P = 48, n − c = 96, c = 5, s = 3: (96)·3 − int((48−5)/2·3) = 288 − int(64.5) = 224
        let a = ChopGeometry::new(101, 48, 48, 3, ChopMode::Exact)
            .unwrap()
            .rows;
        assert_eq!(a.cut(), 5);
        assert_eq!(a.splice(), 288 - 64);
        // the last window (input row 53) is taken from its row ⌈64.5⌉ = 65 on: 53·3 + 65 = 224
        assert_eq!(a.last() * 3 + 65, a.splice());
    }

    #[test]
    fn geometry_of_the_spec_example() {
        let g = ChopGeometry::new(100, 77, 48, 1, ChopMode::Exact).unwrap();
        assert_eq!((g.h_cut(), g.w_cut(), g.nh(), g.nw()), (4, 5, 5, 3));
        assert_eq!(g.window_rows(), vec![0, 12, 24, 36, 48, 52]);
        assert_eq!(g.window_cols(), vec![0, 12, 24, 29]);
        // the official code evaluates 15 + 6 + 10 + 1 = 32; 8 of those repeat another
        assert_eq!(g.window_count(), 6 * 4);
        let g = ChopGeometry::new(48, 48, 48, 2, ChopMode::Exact).unwrap();
        assert_eq!(g.windows(), vec![(0, 0)]);
        let g = ChopGeometry::new(321, 481, 48, 2, ChopMode::Fast).unwrap();
        assert_eq!(
            (g.stride(), g.margin(), g.h_cut(), g.w_cut()),
            (36, 6, 21, 1)
        );
        assert_eq!(g.window_count(), 9 * 14);
        assert!(matches!(
            ChopGeometry::new(48, 48, 30, 1, ChopMode::Exact),
            Err(ChopError::Patch { patch: 30, .. })
        ));
        assert!(matches!(
            ChopGeometry::new(48, 48, 12, 1, ChopMode::Fast),
            Err(ChopError::Patch { patch: 12, .. })
        ));
        assert!(ChopGeometry::new(48, 48, 12, 1, ChopMode::Exact).is_ok());
    }

    #[test]
    fn every_output_pixel_has_a_window_and_fast_mode_has_exactly_one() {
        for mode in [ChopMode::Exact, ChopMode::Fast] {
            for patch in [48usize, 24, 16] {
                for n in patch..patch + 90 {
                    for s in 1..=4 {
                        let g = ChopGeometry::new(n, patch, patch, s, mode).unwrap();
                        let a = g.rows;
                        for first in [g.margin() * s, patch * s] {
                            let counts = a.counts(first);
                            assert!(
                                counts.iter().all(|&c| c >= 1.0),
                                "{mode} P={patch} n={n} s={s}: a coordinate has no window"
                            );
                            if mode == ChopMode::Fast {
                                assert!(counts.iter().all(|&c| c == 1.0), "{mode} n={n} s={s}");
                            } else {
                                // central bands of width 2T at stride T: at most two per axis
                                assert!(counts.iter().all(|&c| c <= 2.0));
                            }
                            // the last band supplying a row never decreases down the image
                            let last = a.last_supplier(first);
                            assert!(last.windows(2).all(|p| p[0] <= p[1]));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn mode_names_round_trip() {
        for m in [ChopMode::Exact, ChopMode::Fast] {
            assert_eq!(m.to_string().parse::<ChopMode>().unwrap(), m);
        }
        assert_eq!(" Fast ".parse::<ChopMode>().unwrap(), ChopMode::Fast);
        assert!("quick".parse::<ChopMode>().is_err());
        assert_eq!(ChopMode::default(), ChopMode::Exact);
    }

    /// Runs the assembler's reserve/release sequence of [`Chop::stream`] (no model, one
    /// channel) and returns the most output rows it held pending.
    fn peak_pending_rows(chop: &Chop, h: usize, w: usize) -> usize {
        let g = chop.geometry(h, w).unwrap();
        let mut asm = Assembler::new(&g);
        let windows = g.windows();
        let mut peak = 0;
        for (k, chunk) in windows.chunks(chop.crop_batch).enumerate() {
            let end = chunk.iter().map(|&(a, _)| asm.band_end(a)).max().unwrap();
            asm.reserve(1, end).unwrap();
            peak = peak.max(asm.pending.as_ref().unwrap().size()[1] as usize);
            let next_band = windows.get((k + 1) * chop.crop_batch).map(|&(a, _)| a);
            asm.release(next_band).unwrap();
        }
        assert_eq!(asm.done, g.h() * g.scale(), "every row released");
        peak
    }

    #[test]
    fn the_pending_bound_covers_what_the_assembler_holds() {
        for mode in [ChopMode::Exact, ChopMode::Fast] {
            for (h, w) in [(48, 48), (100, 77), (321, 481), (130, 600), (30, 200)] {
                for scale in [1, 2, 4] {
                    for crop_batch in [1, 3, 16, 64] {
                        let chop = Chop {
                            scale,
                            patch: 48,
                            mode,
                            crop_batch,
                        };
                        let (rows, width) = chop.max_pending(h, w);
                        assert_eq!(width, w.max(48) * scale);
                        let peak = peak_pending_rows(&chop, h, w);
                        assert!(
                            peak <= rows,
                            "{mode} {h}x{w} s={scale} b={crop_batch}: {peak} > {rows}"
                        );
                        // the transposed ensemble members: bounded in values by the square of
                        // the longer side (what the memory estimate counts for the ensemble)
                        let m = h.max(w);
                        let (square, square_width) = chop.max_pending(m, m);
                        let transposed = peak_pending_rows(&chop, w, h) * h.max(48) * scale;
                        assert!(
                            transposed <= square * square_width,
                            "{mode} {w}x{h} s={scale} b={crop_batch}: {transposed} > {square}·{square_width}"
                        );
                    }
                }
            }
        }
    }
}
