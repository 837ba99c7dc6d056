//! Image decoding (PNG, JPEG, BMP, TIFF, WebP) from memory with decoding limits. The limits
//! are smaller than the defaults (4 megapixels, 64 MiB) so that the fuzzer's memory limit
//! flags any allocation the limits should have stopped. Seeds: `fuzz/seeds/image`.
//!
//! `ipt_degrade::io` turns a panic inside a third-party decoder into a decode error (zune-jpeg
//! 0.5.15 has such panics). libfuzzer-sys's panic hook would abort before that can happen, so
//! this target installs one that lets the panic unwind (quietly for third-party code): a panic
//! that reaches the harness still aborts and is reported as a crash.
#![no_main]

use std::path::Path;
use std::sync::Once;

use ipt_degrade::io::{decode_image_bytes, Channels, ImageLimits, ReadOptions};
use libfuzzer_sys::fuzz_target;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let third_party = info
                .location()
                .is_some_and(|l| l.file().contains("/.cargo/registry/"));
            if !third_party {
                eprintln!("{info}");
            }
        }))
    });
    let limits = ImageLimits {
        max_pixels: 4 << 20,
        max_bytes: 64 << 20,
    };
    for channels in [Channels::Rgb, Channels::Gray] {
        let opts = ReadOptions { channels, limits };
        if let Ok(img) = decode_image_bytes(data, Path::new("fuzz.img"), &opts) {
            assert!(img.len() as u64 <= 3 * limits.max_pixels);
        }
    }
});
