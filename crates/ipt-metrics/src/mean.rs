//! Per-set averaging.

/// Running mean of per-image values (the field's "averaged over the set").
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SetMean {
    sum: f64,
    count: usize,
}

impl SetMean {
    /// An empty mean.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds one image's value.
    pub fn push(&mut self, value: f64) {
        self.sum += value;
        self.count += 1;
    }
    /// Number of values added.
    pub fn count(&self) -> usize {
        self.count
    }
    /// The mean, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

impl Extend<f64> for SetMean {
    fn extend<I: IntoIterator<Item = f64>>(&mut self, iter: I) {
        iter.into_iter().for_each(|v| self.push(v));
    }
}

impl FromIterator<f64> for SetMean {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Self {
        let mut m = SetMean::new();
        m.extend(iter);
        m
    }
}
