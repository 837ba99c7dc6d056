//! Whole-image inference (`forward_chop`, self-ensemble) against mock models whose output is
//! known exactly (official `model/__init__.py`: `forward_chop`, `forward_x8`).

use std::collections::HashMap;

use ipt_model::chop::{forward_chop, forward_chop_grouped, window_count, ChopError, WindowGroup};
use ipt_model::ensemble::self_ensemble;
use tch::{Device, Kind, Tensor};

/// A random `[1, 3, h, w]` image on 0..255 (seeded).
fn image(h: i64, w: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::rand([1, 3, h, w], (Kind::Float, Device::Cpu)) * 255.0
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

#[test]
fn nearest_neighbour_mock_is_reproduced_exactly() {
    let sizes = [(48, 48), (49, 61), (100, 77), (256, 171), (321, 481)];
    for s in 1..=4usize {
        for (seed, &(h, w)) in sizes.iter().enumerate() {
            let x = image(h, w, seed as i64);
            let mut windows = 0usize;
            let y = forward_chop(&x, s, 48, 64, |b: &Tensor| {
                assert_eq!(&b.size()[1..], &[3, 48, 48]);
                windows += b.size()[0] as usize;
                upsample_nn(b, s as i64)
            })
            .unwrap();
            let expected = upsample_nn(&x, s as i64);
            assert_eq!(y.size(), vec![1, 3, h * s as i64, w * s as i64]);
            assert_eq!(max_abs_diff(&y, &expected), 0.0, "{h}x{w} s={s}");
            let nh = (h as usize - 48) / 12 + 1;
            let nw = (w as usize - 48) / 12 + 1;
            assert_eq!(windows, nh * nw + 2 * nw + 2 * nh + 1, "{h}x{w}");
            assert_eq!(windows, window_count(h as usize, w as usize, 48));
        }
    }
}

#[test]
fn tag_map_matches_the_official_assembly() {
    // Tag map: each model call returns a constant per group; 100×77, s = 1.
    let tag = |g: WindowGroup| -> f64 {
        match g {
            WindowGroup::Corner => 5.0,
            WindowGroup::BottomStrip => 2.0,
            WindowGroup::RightStrip => 4.0,
            WindowGroup::TopStrip => 1.0,
            WindowGroup::LeftStrip => 3.0,
            WindowGroup::MainGrid => 9.0,
        }
    };
    let x = image(100, 77, 7);
    let mut order = Vec::new();
    let y = forward_chop_grouped(&x, 1, 48, 64, |g, b: &Tensor| {
        order.push(g);
        b.zeros_like() + tag(g)
    })
    .unwrap();
    assert_eq!(
        order,
        WindowGroup::ALL.to_vec(),
        "one call per group, official order"
    );
    let expected = |r: usize, c: usize| -> f64 {
        match (r, c) {
            (0..=11, 0..=47) => 3.0,
            (0..=11, 48..=50) => 1.0,
            (0..=73, 51..=76) => 4.0,
            (12..=73, 0..=11) => 3.0,
            (12..=73, 12..=50) => 9.0,
            (74..=99, 0..=50) => 2.0,
            (74..=99, 51..=76) => 5.0,
            _ => unreachable!(),
        }
    };
    let map = Vec::<f32>::try_from(y.get(0).get(0).reshape([-1])).unwrap();
    for r in 0..100 {
        for c in 0..77 {
            assert_eq!(map[r * 77 + c] as f64, expected(r, c), "pixel ({r}, {c})");
        }
    }
    for ch in 1..3 {
        assert_eq!(max_abs_diff(&y.get(0).get(ch), &y.get(0).get(0)), 0.0);
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
    for batch in [1usize, 7] {
        let (y, calls) = run(batch);
        assert_eq!(max_abs_diff(&y, &y64), 0.0, "crop batch {batch}");
        assert!(calls > calls64);
    }
    // 100×77: groups of 1, 3, 5, 3, 5, 15 windows → 7 per call gives 1+1+1+1+1+3 calls
    assert_eq!(run(7).1, 8);
    assert_eq!(run(1).1, window_count(100, 77, 48));
}

#[test]
fn images_smaller_than_the_patch_are_reflect_padded() {
    for &(h, w, s) in &[
        (20, 30, 2i64),
        (10, 100, 1),
        (100, 10, 3),
        (1, 5, 2),
        (47, 48, 4),
    ] {
        let x = image(h, w, 5);
        let mut seen = Vec::new();
        let y = forward_chop(&x, s as usize, 48, 64, |b: &Tensor| {
            seen.push(b.shallow_clone());
            upsample_nn(b, s)
        })
        .unwrap();
        assert_eq!(y.size(), vec![1, 3, h * s, w * s]);
        assert_eq!(max_abs_diff(&y, &upsample_nn(&x, s)), 0.0, "{h}x{w}");
        // the corner window is the reflect-padded input: row 47 mirrors row (reflected index)
        let corner = &seen[0];
        let (ph, pw) = (h.max(48), w.max(48));
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
            let (ar, ac) = (ph - 48 + r, pw - 48 + c);
            assert_eq!(
                corner.double_value(&[0, 1, r, c]),
                x.double_value(&[0, 1, reflect(ar, h), reflect(ac, w)]),
                "{h}x{w} window pixel ({r}, {c})"
            );
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
        Err(ChopError::Patch(50))
    ));
    assert!(matches!(
        forward_chop(&x, 0, 48, 8, id),
        Err(ChopError::Scale)
    ));
    // a model that does not upsample as promised
    assert!(matches!(
        forward_chop(&x, 2, 48, 8, id),
        Err(ChopError::ModelOutput { .. })
    ));
}

#[test]
fn other_patch_sizes_tile_exactly() {
    // a tiny config's patch (e.g. 24: stride 6) follows the same rules
    for &(h, w, s, p) in &[(40, 31, 2usize, 24usize), (24, 24, 3, 24), (53, 29, 1, 12)] {
        let x = image(h, w, 9);
        let mut windows = 0;
        let y = forward_chop(&x, s, p, 5, |b: &Tensor| {
            windows += b.size()[0] as usize;
            upsample_nn(b, s as i64)
        })
        .unwrap();
        assert_eq!(max_abs_diff(&y, &upsample_nn(&x, s as i64)), 0.0);
        assert_eq!(windows, window_count(h as usize, w as usize, p));
    }
}

#[test]
fn self_ensemble_of_an_equivariant_model_changes_nothing() {
    // NN upsampling commutes with flips and transposes, so the ×8 ensemble of forward_chop must
    // give the same image as a single forward_chop.
    let x = image(61, 50, 2);
    let chop = |xi: &Tensor| forward_chop(xi, 3, 48, 64, |b: &Tensor| upsample_nn(b, 3));
    let plain = chop(&x).unwrap();
    let mut calls = 0;
    let ens = self_ensemble(&x, |xi| {
        calls += 1;
        let y = chop(xi)?;
        // every member is reproduced exactly in its own orientation
        assert_eq!(max_abs_diff(&y, &upsample_nn(xi, 3)), 0.0);
        Ok::<_, ChopError>(y)
    })
    .unwrap();
    assert_eq!(calls, 8);
    // the float32 mean of eight equal values is that value up to rounding of the running sum
    // (≤ 8 ulp of 255 ≈ 1.2e-4)
    let err = max_abs_diff(&plain, &ens);
    assert!(err < 1.2e-4, "max error {err}");
}

#[test]
fn self_ensemble_averages_the_eight_orientations() {
    // A non-equivariant whole-image function: add a horizontal ramp. Naive reference: apply the
    // eight transforms by index arithmetic in f64 and average.
    let (h, w) = (5i64, 7i64);
    let x = image(h, w, 4);
    let f = |t: &Tensor| -> Result<Tensor, tch::TchError> {
        let wd = t.size()[3];
        let ramp = Tensor::arange(wd, (Kind::Float, Device::Cpu)).view([1, 1, 1, wd]);
        Ok(t + ramp * 10.0)
    };
    let got = self_ensemble(&x, f).unwrap();
    let xv = Vec::<f32>::try_from(x.reshape([-1])).unwrap();
    let (hu, wu) = (h as usize, w as usize);
    for c in 0..3 {
        for r in 0..hu {
            for q in 0..wu {
                // for member i (flip W? flip H? transpose?) the ramp seen at original pixel (r, q)
                // is its column index in the transformed image
                let mut sum = 0.0;
                for i in 0..8 {
                    let (fw, fh, tr) = (i % 2 == 1, (i % 4) > 1, i > 3);
                    let (r1, q1) = (
                        if fh { hu - 1 - r } else { r },
                        if fw { wu - 1 - q } else { q },
                    );
                    let col = if tr { r1 } else { q1 };
                    sum += xv[(c * hu + r) * wu + q] as f64 + 10.0 * col as f64;
                }
                let want = sum / 8.0;
                let have = got.double_value(&[0, c as i64, r as i64, q as i64]);
                assert!(
                    (have - want).abs() < 1e-4,
                    "({c},{r},{q}): {have} vs {want}"
                );
            }
        }
    }
}
