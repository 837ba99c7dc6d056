//! Progress bars over images and over inference windows (on stderr; indicatif hides them when
//! stderr is not a terminal).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Two stacked bars: images of the current cell, and windows of the current image.
pub struct BenchProgress {
    multi: MultiProgress,
    /// Images of the current cell (set × scale/σ).
    pub images: ProgressBar,
    /// Windows of the current image's whole-image inference (IPT only).
    pub windows: ProgressBar,
}

impl BenchProgress {
    /// Bars drawn on stderr.
    pub fn stderr() -> Self {
        Self::with_target(ProgressDrawTarget::stderr())
    }

    /// Bars that draw nothing (tests, `--quiet`).
    pub fn hidden() -> Self {
        Self::with_target(ProgressDrawTarget::hidden())
    }

    fn with_target(target: ProgressDrawTarget) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let images = multi.add(ProgressBar::new(0));
        images.set_style(
            ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {pos}/{len} images {elapsed_precise} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let windows = multi.add(ProgressBar::new(0));
        windows.set_style(
            ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} windows {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        windows.set_prefix("");
        BenchProgress {
            multi,
            images,
            windows,
        }
    }

    /// Starts a new cell of `len` images labelled `label` (e.g. `Set5 x2`).
    pub fn start_cell(&self, label: &str, len: usize) {
        self.images.set_prefix(label.to_string());
        self.images.set_length(len as u64);
        self.images.set_position(0);
        self.images.reset_elapsed();
        self.windows.set_length(0);
        self.windows.set_position(0);
    }

    /// Prints a line above the bars (or to stderr when they are hidden).
    pub fn println(&self, line: &str) {
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.windows.finish_and_clear();
        self.images.finish_and_clear();
    }
}
