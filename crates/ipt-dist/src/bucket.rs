//! Planning the size-bounded buckets of a coalesced gradient all-reduce (pure; no communication).

use tch::{Device, Kind};

/// What the planner needs to know of one tensor; `None` for an undefined tensor, which is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Element type; a bucket holds one type.
    pub kind: Kind,
    /// Device; a bucket lives on one device.
    pub device: Device,
    /// Number of elements.
    pub numel: usize,
}

impl Slot {
    /// Bytes the slot occupies in a flat bucket.
    pub fn bytes(&self) -> usize {
        self.numel * self.kind.elt_size_in_bytes()
    }
}

/// Group the defined slots, in order, into buckets of at most `bucket_bytes` bytes, each holding one element type
/// on one device. A tensor larger than `bucket_bytes` gets a bucket of its own; `bucket_bytes == 0` gives one
/// bucket per tensor. Returns the slot indices of each bucket.
pub fn plan_buckets(slots: &[Option<Slot>], bucket_bytes: usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut current_bytes = 0usize;
    let mut current_key: Option<(Kind, Device)> = None;
    for (i, slot) in slots.iter().enumerate() {
        let Some(slot) = slot else { continue };
        let key = (slot.kind, slot.device);
        let fits = current_bytes + slot.bytes() <= bucket_bytes;
        if !current.is_empty() && (current_key != Some(key) || !fits) {
            buckets.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current.push(i);
        current_bytes += slot.bytes();
        current_key = Some(key);
    }
    if !current.is_empty() {
        buckets.push(current);
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(numel: usize) -> Option<Slot> {
        Some(Slot {
            kind: Kind::Float,
            device: Device::Cpu,
            numel,
        })
    }

    #[test]
    fn buckets_respect_the_byte_bound_and_keep_order() {
        // 4-byte floats, 40-byte buckets: 4+4 fit (32 B), 3 does not join them, 12 is alone (oversized)
        let slots = [f32s(4), f32s(4), f32s(3), f32s(12), f32s(1)];
        assert_eq!(
            plan_buckets(&slots, 40),
            vec![vec![0, 1], vec![2], vec![3], vec![4]]
        );
        assert_eq!(plan_buckets(&slots, 1 << 20), vec![vec![0, 1, 2, 3, 4]]);
        assert_eq!(
            plan_buckets(&slots, 0),
            vec![vec![0], vec![1], vec![2], vec![3], vec![4]]
        );
    }

    #[test]
    fn undefined_slots_are_skipped_and_kinds_never_mix() {
        let half = Some(Slot {
            kind: Kind::BFloat16,
            device: Device::Cpu,
            numel: 2,
        });
        let slots = [None, f32s(1), half, None, f32s(1), f32s(1)];
        assert_eq!(
            plan_buckets(&slots, 1 << 20),
            vec![vec![1], vec![2], vec![4, 5]]
        );
        assert!(plan_buckets(&[None, None], 100).is_empty());
    }
}
