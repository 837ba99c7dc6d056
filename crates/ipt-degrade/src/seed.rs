//! Seed derivation: the one place where independent random streams are carved out of a seed.
//!
//! Everything random in the workspace draws from [`crate::Rng8`] (`ChaCha8Rng`) seeded by a
//! `u64`. Two derivations exist, each for a reason:
//!
//! - [`derive_seed`]`(base, parts)`: SplitMix64 chaining over a list of integers. Training uses
//!   it for every stream that must be a pure function of a few indices (seed, epoch, batch,
//!   item slot, step, domain tag), so a run can resume at any step and shard over processes.
//! - [`noise_seed`]`(base, set, image, σ)`: FNV-1a over the image's name, for the denoising
//!   benchmark, so each test image's noise does not depend on which other images run, their
//!   order, `--limit` or threads.

/// SplitMix64 finaliser: a well-mixed 64-bit hash used to derive independent seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Derive a seed from a base seed and a sequence of indices (order matters).
pub fn derive_seed(base: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix64(base), |acc, &p| {
        mix64(acc ^ mix64(p.wrapping_add(0x5851_F42D)))
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`, continuing from `state`.
fn fnv1a64(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// A file's place in a seeded order of a set, from its name alone:
/// `FNV-1a-64(seed as 8 little-endian bytes ‖ UTF-8 name)`. Taking the files of smallest rank
/// gives subsets that are nested (a smaller fraction is part of every larger one) and do not
/// depend on where the set lies or on which other files it holds.
pub fn name_rank(seed: u64, name: &str) -> u64 {
    let state = fnv1a64(FNV_OFFSET, &seed.to_le_bytes());
    fnv1a64(state, name.as_bytes())
}

/// The noise seed of image `image` of set `set` at level `sigma`:
/// `FNV-1a-64(base as 8 little-endian bytes ‖ UTF-8 "<set>/<image>/sigma<σ>")`.
pub fn noise_seed(base: u64, set: &str, image: &str, sigma: u32) -> u64 {
    let state = fnv1a64(FNV_OFFSET, &base.to_le_bytes());
    fnv1a64(state, format!("{set}/{image}/sigma{sigma}").as_bytes())
}

/// The generator of one benchmark image's noise: [`crate::Rng8`] seeded with [`noise_seed`].
pub fn noise_rng(base: u64, set: &str, image: &str, sigma: u32) -> crate::Rng8 {
    use rand::SeedableRng;
    crate::Rng8::seed_from_u64(noise_seed(base, set, image, sigma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(fnv1a64(FNV_OFFSET, b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(FNV_OFFSET, b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(FNV_OFFSET, b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn noise_seeds_differ_by_every_component_and_are_stable() {
        let s = noise_seed(1, "CBSD68", "3096", 30);
        assert_eq!(s, noise_seed(1, "CBSD68", "3096", 30));
        assert_ne!(s, noise_seed(2, "CBSD68", "3096", 30));
        assert_ne!(s, noise_seed(1, "Urban100", "3096", 30));
        assert_ne!(s, noise_seed(1, "CBSD68", "3097", 30));
        assert_ne!(s, noise_seed(1, "CBSD68", "3096", 50));
        // Written out by hand from the definition.
        let mut bytes = 1u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"CBSD68/3096/sigma30");
        assert_eq!(s, fnv1a64(FNV_OFFSET, &bytes));
    }

    #[test]
    fn derived_seeds_depend_on_order_and_every_part() {
        let a = derive_seed(7, &[1, 2]);
        assert_eq!(a, derive_seed(7, &[1, 2]));
        assert_ne!(a, derive_seed(7, &[2, 1]));
        assert_ne!(a, derive_seed(8, &[1, 2]));
        assert_ne!(a, derive_seed(7, &[1, 2, 0]));
        // SplitMix64 reference: the first output of a generator seeded with 0.
        assert_eq!(mix64(0), 0xE220_A839_7B1D_CDAF);
    }
}
