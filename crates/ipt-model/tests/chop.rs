//! Whole-image inference (the streamed window stitching of `ipt_model::chop`) against mock models
//! whose output is known exactly, against a naive per-pixel reference of the official assembly,
//! and against the official all-at-once code (`tests/support/official_chop.rs`).

#[path = "support/official_chop.rs"]
mod official;

use std::collections::{HashMap, HashSet};

use ipt_model::chop::{forward_chop, Chop, ChopError, ChopGeometry, ChopMode};
use tch::{Device, Kind, Tensor};

const MODES: [ChopMode; 2] = [ChopMode::Exact, ChopMode::Fast];

/// A random `[1, 3, h, w]` image on 0..255 (seeded).
fn image(h: i64, w: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([1, 3, h, w], (Kind::Float, Device::Cpu)) * 255.0
}

/// An image whose channel 0 holds the row index and channel 1 the column index of each pixel
/// (channel 2 random), so a mock can tell where a window came from.
fn position_image(h: i64, w: i64) -> Tensor {
    let rows = Tensor::arange(h, (Kind::Float, Device::Cpu))
        .view([1, 1, h, 1])
        .expand([1, 1, h, w], false);
    let cols = Tensor::arange(w, (Kind::Float, Device::Cpu))
        .view([1, 1, 1, w])
        .expand([1, 1, h, w], false);
    Tensor::cat(&[rows, cols, image(h, w, 1).narrow(1, 0, 1)], 1).contiguous()
}

/// Top-left input positions of the windows in a batch cut from a [`position_image`].
fn positions(b: &Tensor) -> Vec<(usize, usize)> {
    (0..b.size()[0])
        .map(|k| {
            (
                b.double_value(&[k, 0, 0, 0]) as usize,
                b.double_value(&[k, 1, 0, 0]) as usize,
            )
        })
        .collect()
}

/// Nearest-neighbour ×s upsampling: each pixel becomes an s×s block.
fn upsample_nn(x: &Tensor, s: i64) -> Tensor {
    x.repeat_interleave_self_int(s, 2, None)
        .repeat_interleave_self_int(s, 3, None)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn chop(scale: usize, mode: ChopMode, crop_batch: usize) -> Chop {
    Chop {
        scale,
        patch: 48,
        mode,
        crop_batch,
    }
}

#[test]
fn nearest_neighbour_mock_is_reproduced_exactly_with_each_window_once() {
    let sizes = [(48, 48), (49, 61), (100, 77), (256, 171), (321, 481)];
    for mode in MODES {
        for s in 1..=4usize {
            for &(h, w) in &sizes {
                let x = position_image(h, w);
                let mut seen = Vec::new();
                let y = chop(s, mode, 64)
                    .run(&x, |b: &Tensor| {
                        assert_eq!(&b.size()[1..], &[3, 48, 48]);
                        seen.extend(positions(b));
                        upsample_nn(b, s as i64)
                    })
                    .unwrap();
                let expected = upsample_nn(&x, s as i64);
                assert_eq!(y.size(), vec![1, 3, h * s as i64, w * s as i64]);
                assert_eq!(max_abs_diff(&y, &expected), 0.0, "{mode} {h}x{w} s={s}");
                let g = ChopGeometry::new(h as usize, w as usize, 48, s, mode).unwrap();
                assert_eq!(seen, g.windows(), "{mode} {h}x{w}: band by band, row-major");
                let distinct: HashSet<_> = seen.iter().collect();
                assert_eq!(distinct.len(), seen.len(), "every window evaluated once");
                assert_eq!(seen.len(), g.window_count());
            }
        }
    }
}

#[test]
fn window_sources_match_the_official_assembly() {
    // Each window's output is a constant tag (1000·row + column of its top-left corner), so every
    // output pixel is the mean of the tags of the windows that supply it; tags are small integers
    // and means of up to 4 of them are exact in f32, so the comparison with the official
    // all-at-once code (which evaluates repeated windows again) is exact.
    let tag = |b: &Tensor, s: i64| -> Tensor {
        let tags: Vec<f32> = positions(b)
            .into_iter()
            .map(|(r, c)| (1000 * r + c) as f32)
            .collect();
        Tensor::from_slice(&tags)
            .view([-1, 1, 1, 1])
            .expand([b.size()[0], 3, 48 * s, 48 * s], false)
            * 1.0
    };
    for mode in MODES {
        let fast = mode == ChopMode::Fast;
        for &(h, w, s) in &[
            (100i64, 77i64, 1i64),
            (48, 48, 2),
            (60, 61, 3),
            (97, 121, 2),
            (200, 131, 1),
            (49, 84, 4),
        ] {
            let x = position_image(h, w);
            let got = chop(s as usize, mode, 64)
                .run(&x, |b: &Tensor| tag(b, s))
                .unwrap();
            let mut groups = Vec::new();
            let want = official::official_chop(&x, s, 48, 64, fast, |g, b| {
                groups.push(g);
                tag(b, s)
            });
            assert_eq!(max_abs_diff(&got, &want), 0.0, "{mode} {h}x{w} s={s}");
            assert_eq!(groups.first(), Some(&official::Group::Corner));
        }
    }
}

/// A mock whose output depends on the whole window: NN upsampling plus the window mean, so
/// overlapping windows disagree and the averaging rules matter.
fn content_mock(b: &Tensor, s: i64) -> Tensor {
    upsample_nn(b, s) + b.mean_dim([1i64, 2, 3].as_slice(), true, None) * 0.5
}

/// Deliberately naive reference of the official assembly (official `forward_chop`, `cut_h`, `cut_w`), pixel by pixel in f64.
fn naive_chop(x: &Tensor, s: usize) -> Vec<f64> {
    let (h, w) = (x.size()[2] as usize, x.size()[3] as usize);
    let (p, t) = (48usize, 12usize);
    let (hc, wc) = ((h - p) % t, (w - p) % t);
    let (hp, wp) = (h - hc, w - wc);
    let (nh, nw) = ((h - p) / t + 1, (w - p) / t + 1);
    let (ps, ts) = (p * s, t * s);
    // window outputs, by top-left corner (input coordinates)
    let rows: Vec<usize> = (0..nh).map(|i| i * t).chain([h - p]).collect();
    let cols: Vec<usize> = (0..nw).map(|j| j * t).chain([w - p]).collect();
    let mut cache: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    for &r0 in &rows {
        for &c0 in &cols {
            let b = x.narrow(2, r0 as i64, 48).narrow(3, c0 as i64, 48);
            let y = content_mock(&b, s as i64)
                .to_kind(Kind::Double)
                .reshape([-1]);
            cache.insert((r0, c0), Vec::<f64>::try_from(y).unwrap());
        }
    }
    let win = |r0: usize, c0: usize, r: usize, c: usize, ch: usize| -> f64 {
        cache[&(r0, c0)][(ch * ps + r) * ps + c]
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // windows (index k along an axis of length n) whose central band covers output coordinate q
    let covering = |q: usize, n: usize| -> Vec<usize> {
        (0..n)
            .filter(|&k| q >= k * ts + ts && q < k * ts + ps - ts)
            .collect()
    };
    // horizontal strip whose windows sit at input row r0; (r, c) in strip coordinates
    let row_strip = |r0: usize, r: usize, c: usize, ch: usize| -> f64 {
        if c < ts {
            win(r0, 0, r, c, ch)
        } else if c >= wp * s - ts {
            win(r0, (nw - 1) * t, r, c - (nw - 1) * ts, ch)
        } else {
            let v: Vec<f64> = covering(c, nw)
                .into_iter()
                .map(|j| win(r0, j * t, r, c - j * ts, ch))
                .collect();
            mean(&v)
        }
    };
    let mut out = vec![0.0; 3 * h * s * w * s];
    let fh = (p - hc) * s / 2;
    let fw = (p - wc) * s / 2;
    for ch in 0..3 {
        for rr in 0..h * s {
            for cc in 0..w * s {
                let bottom = rr >= hp * s - fh;
                let right = cc >= wp * s - fw;
                let v = match (bottom, right) {
                    (true, true) => win(h - p, w - p, rr - (h - p) * s, cc - (w - p) * s, ch),
                    (true, false) => row_strip(h - p, rr - (h - p) * s, cc, ch),
                    (false, true) => {
                        // right strip: vertical strip at input column w − P
                        let c = cc - (w - p) * s;
                        if rr < ts {
                            win(0, w - p, rr, c, ch)
                        } else if rr >= hp * s - ts {
                            win((nh - 1) * t, w - p, rr - (nh - 1) * ts, c, ch)
                        } else {
                            let v: Vec<f64> = covering(rr, nh)
                                .into_iter()
                                .map(|i| win(i * t, w - p, rr - i * ts, c, ch))
                                .collect();
                            mean(&v)
                        }
                    }
                    (false, false) => {
                        let interior = rr >= ts && rr < hp * s - ts && cc >= ts && cc < wp * s - ts;
                        if interior {
                            let mut v = Vec::new();
                            for i in covering(rr, nh) {
                                for j in covering(cc, nw) {
                                    v.push(win(i * t, j * t, rr - i * ts, cc - j * ts, ch));
                                }
                            }
                            mean(&v)
                        } else if cc < ps {
                            // left strip (vertical strip at input column 0)
                            if rr < ts {
                                win(0, 0, rr, cc, ch)
                            } else if rr >= hp * s - ts {
                                win((nh - 1) * t, 0, rr - (nh - 1) * ts, cc, ch)
                            } else {
                                let v: Vec<f64> = covering(rr, nh)
                                    .into_iter()
                                    .map(|i| win(i * t, 0, rr - i * ts, cc, ch))
                                    .collect();
                                mean(&v)
                            }
                        } else {
                            assert!(
                                rr < ps,
                                "pixel ({rr}, {cc}) would come from raw overlap sums"
                            );
                            row_strip(0, rr, cc, ch)
                        }
                    }
                };
                out[(ch * h * s + rr) * w * s + cc] = v;
            }
        }
    }
    out
}

#[test]
fn window_dependent_mock_matches_a_naive_reference() {
    for &(h, w, s) in &[(100, 77, 1usize), (61, 73, 2), (49, 96, 3), (48, 48, 2)] {
        let x = image(h, w, 11);
        let y = forward_chop(&x, s, 48, 64, |b: &Tensor| content_mock(b, s as i64)).unwrap();
        let got = Vec::<f32>::try_from(y.reshape([-1])).unwrap();
        let want = naive_chop(&x, s);
        assert_eq!(got.len(), want.len());
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-4, "{h}x{w} s={s}: max error {err}");
    }
}

#[test]
fn streaming_equals_the_official_all_at_once_code() {
    // a window-dependent mock, odd sizes: one row/column past a band (48 + 1, 48 + 12k + 1,
    // 48 + 36k + 1), not multiples of the stride, both modes, several scales and batch sizes
    let sizes = [
        (49i64, 49i64),
        (61, 50),
        (85, 97),
        (121, 48),
        (100, 77),
        (157, 133),
    ];
    for mode in MODES {
        for &(h, w) in &sizes {
            for s in [1i64, 2, 3] {
                let x = image(h, w, h * w + s);
                let want =
                    official::official_chop(&x, s, 48, 64, mode == ChopMode::Fast, |_, b| {
                        content_mock(b, s)
                    });
                for batch in [64usize, 5] {
                    let got = chop(s as usize, mode, batch)
                        .run(&x, |b: &Tensor| content_mock(b, s))
                        .unwrap();
                    let err = max_abs_diff(&got, &want);
                    assert!(err < 1e-4, "{mode} {h}x{w} s={s} batch {batch}: {err}");
                }
            }
        }
    }
}

#[test]
fn result_does_not_depend_on_the_crop_batch() {
    let x = image(100, 77, 3);
    let run = |batch: usize| {
        let mut calls = 0;
        let y = forward_chop(&x, 2, 48, batch, |b: &Tensor| {
            calls += 1;
            assert!(b.size()[0] as usize <= batch);
            content_mock(b, 2)
        })
        .unwrap();
        (y, calls)
    };
    let (y64, calls64) = run(64);
    // 100×77: rows {0, 12, 24, 36, 48, 52} × columns {0, 12, 24, 29} = 24 windows
    assert_eq!(calls64, 1);
    for batch in [1usize, 7] {
        let (y, calls) = run(batch);
        // the windows and the order of the additions are the same whatever the batch
        assert_eq!(max_abs_diff(&y, &y64), 0.0, "crop batch {batch}");
        assert_eq!(calls, 24usize.div_ceil(batch));
    }
}

#[test]
fn windows_held_at_once_are_bounded_by_the_band() {
    // A window's output can be dropped once every output row it could supply has been handed
    // out. Count, at every model call, the windows evaluated so far whose rows are not all out
    // yet: with streaming this is a few bands plus a batch, whatever the image height; the
    // all-at-once code would hold every window until the end.
    for mode in MODES {
        let (w, s, batch) = (200i64, 2usize, 16usize);
        let mut peaks = Vec::new();
        // the bound (4 bands + a batch) does not depend on the height
        for h in [150i64, 700] {
            let x = position_image(h, w);
            let mut evaluated: Vec<usize> = Vec::new(); // top rows of evaluated windows
            let delivered = std::cell::Cell::new(0usize);
            let mut peak = 0;
            let mut rows_seen = Vec::new();
            let held = |evaluated: &[usize], delivered: usize| {
                evaluated
                    .iter()
                    .filter(|&&a| (a + 48) * s > delivered)
                    .count()
            };
            chop(s, mode, batch)
                .stream(
                    &x,
                    |b: &Tensor| {
                        peak = peak.max(held(&evaluated, delivered.get()));
                        evaluated.extend(positions(b).into_iter().map(|(r, _)| r));
                        peak = peak.max(held(&evaluated, delivered.get()));
                        upsample_nn(b, s as i64)
                    },
                    |row, block: &Tensor| -> Result<(), ChopError> {
                        assert_eq!(row, delivered.get(), "rows come in order, each once");
                        rows_seen.push(row);
                        delivered.set(row + block.size()[1] as usize);
                        Ok(())
                    },
                )
                .unwrap();
            assert_eq!(delivered.get(), h as usize * s);
            let g = ChopGeometry::new(h as usize, w as usize, 48, s, mode).unwrap();
            let band = g.window_cols().len();
            assert!(
                peak <= 4 * band + batch,
                "{mode} {h}x{w}: {peak} windows held, band of {band}"
            );
            assert!(
                g.window_count() > 2 * (4 * band + batch) || h < 500,
                "the tall image must have far more windows than the bound"
            );
            assert!(
                h < 500 || rows_seen.len() >= 5,
                "rows are handed out as bands finish: {} blocks",
                rows_seen.len()
            );
            peaks.push(peak);
        }
        eprintln!("{mode}: at most {peaks:?} windows held (heights 150, 700)");
    }
}

#[test]
fn images_smaller_than_the_patch_are_reflect_padded() {
    for mode in MODES {
        for &(h, w, s) in &[
            (20, 30, 2i64),
            (10, 100, 1),
            (100, 10, 3),
            (1, 5, 2),
            (47, 48, 4),
        ] {
            let x = image(h, w, 5);
            let mut seen = Vec::new();
            let y = chop(s as usize, mode, 64)
                .run(&x, |b: &Tensor| {
                    seen.push(b.shallow_clone());
                    upsample_nn(b, s)
                })
                .unwrap();
            assert_eq!(y.size(), vec![1, 3, h * s, w * s]);
            assert_eq!(max_abs_diff(&y, &upsample_nn(&x, s)), 0.0, "{h}x{w}");
            // the first window is the top-left of the reflect-padded input
            let first = &seen[0];
            let reflect = |i: i64, n: i64| {
                if n == 1 {
                    0
                } else {
                    let m = i % (2 * (n - 1));
                    if m < n {
                        m
                    } else {
                        2 * (n - 1) - m
                    }
                }
            };
            for (r, c) in [(47i64, 47i64), (0, 47), (47, 0), (30, 13)] {
                assert_eq!(
                    first.double_value(&[0, 1, r, c]),
                    x.double_value(&[0, 1, reflect(r, h), reflect(c, w)]),
                    "{h}x{w} window pixel ({r}, {c})"
                );
            }
        }
    }
}

#[test]
fn bad_inputs_are_reported() {
    let x = image(50, 50, 1);
    let id = |b: &Tensor| b.shallow_clone();
    assert!(matches!(
        forward_chop(&x.squeeze_dim(0), 1, 48, 64, id),
        Err(ChopError::InputShape(_))
    ));
    assert!(matches!(
        forward_chop(&x.repeat([2, 1, 1, 1]), 1, 48, 64, id),
        Err(ChopError::InputShape(_))
    ));
    assert!(matches!(
        forward_chop(&x, 1, 48, 0, id),
        Err(ChopError::CropBatch)
    ));
    assert!(matches!(
        forward_chop(&x, 1, 50, 8, id),
        Err(ChopError::Patch { patch: 50, .. })
    ));
    let fast12 = Chop {
        scale: 1,
        patch: 12,
        mode: ChopMode::Fast,
        crop_batch: 8,
    };
    let err = fast12.run(&x, id).unwrap_err();
    assert!(err.to_string().contains("multiple of 8"), "{err}");
    assert!(matches!(
        forward_chop(&x, 0, 48, 8, id),
        Err(ChopError::Scale)
    ));
    // a model that does not upsample as promised
    assert!(matches!(
        forward_chop(&x, 2, 48, 8, id),
        Err(ChopError::ModelOutput { .. })
    ));
    // a model whose channel count changes between calls
    let mut calls = 0;
    let err = forward_chop(&image(100, 100, 2), 1, 48, 2, |b: &Tensor| {
        calls += 1;
        if calls == 1 {
            b.shallow_clone()
        } else {
            b.narrow(1, 0, 2)
        }
    })
    .unwrap_err();
    assert!(matches!(err, ChopError::ModelOutput { .. }), "{err}");
}

#[test]
fn other_patch_sizes_tile_exactly() {
    // a tiny config's patch (e.g. 24: stride 6, or 18 in fast mode) follows the same rules
    for &(h, w, s, p, mode) in &[
        (40, 31, 2usize, 24usize, ChopMode::Exact),
        (24, 24, 3, 24, ChopMode::Exact),
        (53, 29, 1, 12, ChopMode::Exact),
        (70, 45, 2, 24, ChopMode::Fast),
        (53, 29, 3, 16, ChopMode::Fast),
    ] {
        let x = image(h, w, 9);
        let mut windows = 0;
        let c = Chop {
            scale: s,
            patch: p,
            mode,
            crop_batch: 5,
        };
        let y = c
            .run(&x, |b: &Tensor| {
                windows += b.size()[0] as usize;
                upsample_nn(b, s as i64)
            })
            .unwrap();
        assert_eq!(max_abs_diff(&y, &upsample_nn(&x, s as i64)), 0.0);
        let g = c.geometry(h as usize, w as usize).unwrap();
        assert_eq!(windows, g.window_count());
    }
}

#[test]
fn fast_mode_uses_far_fewer_windows() {
    let exact = ChopGeometry::new(1536, 2048, 48, 2, ChopMode::Exact).unwrap();
    let fast = ChopGeometry::new(1536, 2048, 48, 2, ChopMode::Fast).unwrap();
    assert_eq!(exact.window_count(), 125 * 168);
    assert_eq!(fast.window_count(), 43 * 57);
    assert!(exact.window_count() > 8 * fast.window_count());
}
