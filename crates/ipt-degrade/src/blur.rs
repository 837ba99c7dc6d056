//! Gaussian blur kernels and 2-D filtering as Real-ESRGAN/BasicSR make them.
//!
//! - [`gaussian_kernel`]: the bivariate Gaussian of BasicSR `basicsr/data/degradations.py`
//!   (`mesh_grid`, `sigma_matrix2`, `pdf2`, `bivariate_Gaussian`), normalised to sum 1.
//! - [`filter2d`]: cross-correlation of each channel with a kernel, borders extended by
//!   reflect-101 (`dcb|abcd|cba`), as BasicSR `basicsr/utils/img_process_util.py`, `filter2D`
//!   (`F.pad(img, (k // 2,) * 4, mode='reflect')` then `F.conv2d`; PyTorch's `'reflect'` does
//!   not repeat the edge pixel) and as OpenCV `cv2.filter2D(img, -1, kernel)` (default border
//!   `BORDER_REFLECT_101`, anchor at the kernel centre, also a correlation). Real-ESRGAN blurs
//!   its training inputs with the former (`realesrgan/models/realesrgan_model.py`,
//!   `feed_data`).

use ndarray::{Array2, Array3};
use rayon::prelude::*;

use crate::{DegradeError, Image};

/// Largest kernel side [`gaussian_kernel`] makes (Real-ESRGAN uses 7–21).
pub const MAX_KERNEL_SIZE: usize = 255;

/// The bivariate Gaussian kernel of BasicSR's `bivariate_Gaussian(kernel_size, sig_x, sig_y,
/// theta, isotropic)` (`basicsr/data/degradations.py`), normalised to sum 1.
///
/// `size` is the side (odd, 1 to [`MAX_KERNEL_SIZE`]); `sigma_x` and `sigma_y` are the standard
/// deviations in pixels along the kernel's own axes before rotation, `theta` the rotation in
/// radians (counter-clockwise from the x axis, with y pointing down the rows).
///
/// As in BasicSR (`mesh_grid`): element `[i, j]` (row `i`, column `j`) sits at
/// `p = (x, y) = (j − size/2, i − size/2)` (integer division), and its value is
/// `exp(−½ · p Σ⁻¹ pᵀ)` with `Σ = U · diag(σx², σy²) · Uᵀ`, `U = [[cos θ, −sin θ], [sin θ,
/// cos θ]]` (`sigma_matrix2`); so with `theta = 0` `sigma_x` spreads along the columns. When
/// `sigma_x == sigma_y` the kernel is isotropic and `Σ = diag(σ², σ²)` exactly (BasicSR's
/// `isotropic=True` branch), whatever `theta`. The values are then divided by their sum. All in
/// `f64`; BasicSR inverts Σ with `np.linalg.inv`, this function in closed form, so the two agree
/// to rounding (about 1e-16 relative), not bit for bit.
///
/// # Errors
/// [`DegradeError::Parameter`] for an even, zero or too large `size`, a `sigma_x` or `sigma_y`
/// that is not finite and positive (or so small that `1/σ²` overflows), or a non-finite `theta`.
pub fn gaussian_kernel(
    size: usize,
    sigma_x: f64,
    sigma_y: f64,
    theta: f64,
) -> Result<Array2<f64>, DegradeError> {
    if size.is_multiple_of(2) || size > MAX_KERNEL_SIZE {
        return Err(DegradeError::Parameter(format!(
            "size (kernel size) must be odd and in 1..={MAX_KERNEL_SIZE}, got {size}"
        )));
    }
    for (name, s) in [("sigma_x", sigma_x), ("sigma_y", sigma_y)] {
        if !(s.is_finite() && s > 0.0 && (1.0 / (s * s)).is_finite()) {
            return Err(DegradeError::Parameter(format!(
                "{name} must be finite and > 0 (with 1/{name}² finite), got {s}"
            )));
        }
    }
    if !theta.is_finite() {
        return Err(DegradeError::Parameter(format!(
            "theta must be finite, got {theta}"
        )));
    }
    // Σ = [[a, b], [b, c]].
    let (a, b, c) = if sigma_x == sigma_y {
        (sigma_x * sigma_x, 0.0, sigma_x * sigma_x)
    } else {
        let (sx2, sy2) = (sigma_x * sigma_x, sigma_y * sigma_y);
        let (s, co) = theta.sin_cos();
        // U · (D · Uᵀ), as `np.dot(u_matrix, np.dot(d_matrix, u_matrix.T))`.
        let (d00, d01, d10, d11) = (sx2 * co, sx2 * s, -sy2 * s, sy2 * co);
        (co * d00 - s * d10, co * d01 - s * d11, s * d01 + co * d11)
    };
    let det = a * c - b * b;
    let (ia, ib, ic) = (c / det, -b / det, a / det);
    if !(det > 0.0 && ia.is_finite() && ib.is_finite() && ic.is_finite()) {
        return Err(DegradeError::Parameter(format!(
            "sigma_x, sigma_y ({sigma_x}, {sigma_y}) give a singular covariance matrix"
        )));
    }
    let half = (size / 2) as f64;
    let mut k = Array2::from_shape_fn((size, size), |(i, j)| {
        let (x, y) = (j as f64 - half, i as f64 - half);
        // p Σ⁻¹ pᵀ, as `np.sum(np.dot(grid, inverse_sigma) * grid, 2)`.
        let q = (x * ia + y * ib) * x + (x * ib + y * ic) * y;
        (-0.5 * q).exp()
    });
    let sum = k.sum();
    k.mapv_inplace(|v| v / sum);
    Ok(k)
}

/// OpenCV's `borderInterpolate(p, len, BORDER_REFLECT_101)`: folds an out-of-range index back
/// into `0..len` by reflecting about the first and last pixels (without repeating them), as many
/// times as needed. For offsets smaller than `len` this is also PyTorch's `F.pad(mode='reflect')`.
fn reflect101(mut p: isize, len: usize) -> usize {
    let n = len as isize;
    if n == 1 {
        return 0;
    }
    while p < 0 || p >= n {
        p = if p < 0 { -p } else { 2 * n - 2 - p };
    }
    p as usize
}

/// Filters each channel with `kernel` (cross-correlation, anchor at the centre, reflect-101
/// borders), accumulating in `f64`; the result is neither clipped nor rounded.
///
/// `out[c, y, x] = Σ_{i, j} kernel[i, j] · img[c, y + i − kh/2, x + j − kw/2]`, with indices
/// outside the image reflected about the first/last pixel (`dcb|abcd|cba`). This is BasicSR
/// `basicsr/utils/img_process_util.py`, `filter2D` (PyTorch `'reflect'` padding of `k // 2`,
/// `F.conv2d`, which correlates) and OpenCV `cv2.filter2D` with its default
/// `BORDER_REFLECT_101`. Where the kernel is larger than the image, the reflection repeats as in
/// OpenCV (PyTorch refuses padding ≥ the image side). The kernel is used as given (not
/// normalised, not flipped). Any channel count; an empty image gives an empty image.
///
/// # Errors
/// [`DegradeError::Parameter`] if `kernel` is empty, has an even side, or holds a non-finite
/// value.
pub fn filter2d(img: &Image, kernel: &Array2<f64>) -> Result<Image, DegradeError> {
    let (kh, kw) = kernel.dim();
    if kh == 0 || kw == 0 || kh.is_multiple_of(2) || kw.is_multiple_of(2) {
        return Err(DegradeError::Parameter(format!(
            "kernel must have odd, non-zero sides, got {kh}×{kw} (rows×columns)"
        )));
    }
    if kernel.iter().any(|v| !v.is_finite()) {
        return Err(DegradeError::Parameter(
            "kernel must hold finite values".into(),
        ));
    }
    let (c, h, w) = img.dim();
    if c == 0 || h == 0 || w == 0 {
        return Ok(Array3::zeros((c, h, w)));
    }
    let (rh, rw) = (kh / 2, kw / 2);
    let (ph, pw) = (h + 2 * rh, w + 2 * rw);
    let rows: Vec<usize> = (0..ph)
        .map(|y| reflect101(y as isize - rh as isize, h))
        .collect();
    let cols: Vec<usize> = (0..pw)
        .map(|x| reflect101(x as isize - rw as isize, w))
        .collect();
    let kernel: Vec<f64> = kernel.iter().copied().collect();
    let mut out = vec![0.0f32; c * h * w];
    out.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(ch, plane_out)| {
            let plane = img.index_axis(ndarray::Axis(0), ch);
            // The padded plane in f64.
            let mut padded = vec![0.0f64; ph * pw];
            for (py, &sy) in rows.iter().enumerate() {
                let dst = &mut padded[py * pw..(py + 1) * pw];
                for (d, &sx) in dst.iter_mut().zip(&cols) {
                    *d = f64::from(plane[[sy, sx]]);
                }
            }
            plane_out
                .par_chunks_mut(w)
                .enumerate()
                .for_each(|(y, row_out)| {
                    let mut acc = vec![0.0f64; w];
                    for i in 0..kh {
                        let src = &padded[(y + i) * pw..(y + i + 1) * pw];
                        for j in 0..kw {
                            let k = kernel[i * kw + j];
                            for (a, &s) in acc.iter_mut().zip(&src[j..j + w]) {
                                *a += k * s;
                            }
                        }
                    }
                    for (o, a) in row_out.iter_mut().zip(&acc) {
                        *o = *a as f32;
                    }
                });
        });
    Array3::from_shape_vec((c, h, w), out).map_err(|e| DegradeError::Shape {
        shape: vec![c, h, w],
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn kernel_sums_to_one_and_is_centred() {
        for (s, sx, sy, th) in [
            (21, 2.0, 2.0, 0.0),
            (7, 0.2, 3.0, 0.7),
            (1, 1.0, 1.0, 0.0),
            (15, 3.5, 1.1, -2.0),
        ] {
            let k = gaussian_kernel(s, sx, sy, th).expect("kernel");
            assert_eq!(k.dim(), (s, s));
            assert!(
                (k.sum() - 1.0).abs() < 1e-12,
                "{s} {sx} {sy} {th}: {}",
                k.sum()
            );
            let max = k.iter().copied().fold(f64::MIN, f64::max);
            assert_eq!(k[[s / 2, s / 2]], max);
            // Point symmetric: k(p) = k(−p).
            for ((i, j), &v) in k.indexed_iter() {
                assert!((v - k[[s - 1 - i, s - 1 - j]]).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn isotropic_kernel_is_symmetric_and_ignores_theta() {
        let k = gaussian_kernel(9, 1.7, 1.7, 0.0).expect("kernel");
        for ((i, j), &v) in k.indexed_iter() {
            assert_eq!(v, k[[j, i]]);
            assert_eq!(v, k[[8 - i, j]]);
            assert_eq!(v, k[[i, 8 - j]]);
        }
        assert_eq!(gaussian_kernel(9, 1.7, 1.7, 1.234).expect("kernel"), k);
        // Closed form: exp(−(x² + y²) / (2σ²)) / sum.
        let e = |x: f64, y: f64| (-(x * x + y * y) / (2.0 * 1.7 * 1.7)).exp();
        assert!((k[[4, 4]] / k[[4, 6]] - e(0.0, 0.0) / e(2.0, 0.0)).abs() < 1e-12);
    }

    #[test]
    fn sigma_x_spreads_along_columns_and_rotation_by_90_degrees_swaps_sigmas() {
        let k = gaussian_kernel(11, 3.0, 1.0, 0.0).expect("kernel");
        // Wider along x (columns) than along y (rows).
        assert!(k[[5, 8]] > k[[8, 5]]);
        let r = gaussian_kernel(11, 3.0, 1.0, std::f64::consts::FRAC_PI_2).expect("kernel");
        let swapped = gaussian_kernel(11, 1.0, 3.0, 0.0).expect("kernel");
        for (a, b) in r.iter().zip(&swapped) {
            assert!((a - b).abs() < 1e-12, "{a} {b}");
        }
        // θ = 45°: the long axis is the diagonal x = y (row index = column index).
        let d = gaussian_kernel(11, 3.0, 1.0, std::f64::consts::FRAC_PI_4).expect("kernel");
        assert!(d[[7, 7]] > d[[3, 7]]);
        assert!((d[[7, 7]] - d[[3, 3]]).abs() < 1e-15);
    }

    #[test]
    fn matches_basicsr_formula_for_an_anisotropic_kernel() {
        // Direct transcription of sigma_matrix2 / pdf2 with an explicit matrix inverse.
        let (s, sx, sy, th) = (5usize, 2.0f64, 0.8f64, 0.3f64);
        let (sn, co) = th.sin_cos();
        let u = [[co, -sn], [sn, co]];
        let d = [[sx * sx, 0.0], [0.0, sy * sy]];
        let mut du = [[0.0; 2]; 2]; // D · Uᵀ
        let mut m = [[0.0; 2]; 2]; // U · D · Uᵀ
        for i in 0..2 {
            for j in 0..2 {
                du[i][j] = (0..2).map(|k| d[i][k] * u[j][k]).sum();
            }
        }
        for i in 0..2 {
            for j in 0..2 {
                m[i][j] = (0..2).map(|k| u[i][k] * du[k][j]).sum();
            }
        }
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let inv = [
            [m[1][1] / det, -m[0][1] / det],
            [-m[1][0] / det, m[0][0] / det],
        ];
        let mut want = Array2::from_shape_fn((s, s), |(i, j)| {
            let p = [j as f64 - 2.0, i as f64 - 2.0];
            let q: f64 = (0..2)
                .map(|b| (0..2).map(|a| p[a] * inv[a][b]).sum::<f64>() * p[b])
                .sum();
            (-0.5 * q).exp()
        });
        let sum = want.sum();
        want.mapv_inplace(|v| v / sum);
        let k = gaussian_kernel(s, sx, sy, th).expect("kernel");
        for (a, b) in k.iter().zip(&want) {
            assert!((a - b).abs() < 1e-15, "{a} {b}");
        }
    }

    #[test]
    fn bad_kernel_parameters_are_errors() {
        let bad = [
            (0, 1.0, 1.0, 0.0, "size"),
            (4, 1.0, 1.0, 0.0, "size"),
            (257, 1.0, 1.0, 0.0, "size"),
            (5, 0.0, 1.0, 0.0, "sigma_x"),
            (5, 1.0, -1.0, 0.0, "sigma_y"),
            (5, f64::NAN, 1.0, 0.0, "sigma_x"),
            (5, 1e-200, 1.0, 0.0, "sigma_x"),
            (5, 1.0, f64::INFINITY, 0.0, "sigma_y"),
            (5, 1.0, 2.0, f64::NAN, "theta"),
        ];
        for (s, sx, sy, th, name) in bad {
            match gaussian_kernel(s, sx, sy, th) {
                Err(DegradeError::Parameter(m)) => assert!(m.contains(name), "{m}"),
                other => panic!("{s} {sx} {sy} {th}: {other:?}"),
            }
        }
        let img = Image::zeros((1, 4, 4));
        for k in [
            Array2::zeros((0, 0)),
            Array2::zeros((2, 3)),
            array![[f64::NAN]],
        ] {
            match filter2d(&img, &k) {
                Err(DegradeError::Parameter(m)) => assert!(m.contains("kernel"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    fn test_image(c: usize, h: usize, w: usize) -> Image {
        Image::from_shape_fn((c, h, w), |(ch, y, x)| {
            ((x * 37 + y * 91 + ch * 53) % 256) as f32 + 0.25
        })
    }

    #[test]
    fn delta_kernel_is_identity() {
        let img = test_image(3, 6, 5);
        let mut k = Array2::zeros((5, 5));
        k[[2, 2]] = 1.0;
        assert_eq!(filter2d(&img, &k).expect("filter"), img);
        assert_eq!(filter2d(&img, &array![[1.0]]).expect("filter"), img);
    }

    #[test]
    fn shifted_delta_reads_reflect101_neighbours() {
        // Kernel reading the pixel to the left: out[x] = img[x − 1], out[0] = img[1].
        let img = Image::from_shape_fn((1, 1, 4), |(_, _, x)| [10.0, 20.0, 30.0, 40.0][x]);
        let k = array![[1.0, 0.0, 0.0]];
        let out = filter2d(&img, &k).expect("filter");
        assert_eq!(
            out.iter().copied().collect::<Vec<_>>(),
            [20.0, 10.0, 20.0, 30.0]
        );
        // A 7-wide kernel on a 2-pixel row: reflections repeat (OpenCV's borderInterpolate).
        assert_eq!(
            (-4..6).map(|p| reflect101(p, 2)).collect::<Vec<_>>(),
            [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
        );
        assert_eq!(
            (-3..7).map(|p| reflect101(p, 4)).collect::<Vec<_>>(),
            [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
        );
        assert_eq!(reflect101(-5, 1), 0);
    }

    #[test]
    fn matches_direct_f64_summation_on_a_tiny_image() {
        let img = test_image(2, 5, 4);
        let k = array![
            [0.01, 0.02, 0.03],
            [0.04, 0.50, 0.06],
            [0.07, 0.08, 0.19],
            [0.1, -0.2, 0.3],
            [0.0, 0.05, 0.02]
        ];
        // Reflect-101 of a 5×4 image, written out by hand: rows −2..7 → 2 1 0 1 2 3 4 3 2,
        // columns −1..5 → 1 0 1 2 3 2.
        let rmap = |r: isize| [2, 1, 0, 1, 2, 3, 4, 3, 2][(r + 2) as usize];
        let cmap = |c: isize| [1, 0, 1, 2, 3, 2][(c + 1) as usize];
        let out = filter2d(&img, &k).expect("filter");
        for ch in 0..2 {
            for y in 0..5isize {
                for x in 0..4isize {
                    let mut want = 0.0f64;
                    for i in 0..5isize {
                        for j in 0..3isize {
                            let v = img[[ch, rmap(y + i - 2), cmap(x + j - 1)]];
                            want += k[[i as usize, j as usize]] * f64::from(v);
                        }
                    }
                    let got = out[[ch, y as usize, x as usize]];
                    assert_eq!(got, want as f32, "{ch} {y} {x}");
                }
            }
        }
    }

    #[test]
    fn gaussian_blur_keeps_constants_and_is_not_clipped() {
        let img = Image::from_elem((3, 9, 7), 200.0);
        let k = gaussian_kernel(7, 1.5, 0.9, 0.4).expect("kernel");
        let out = filter2d(&img, &k).expect("filter");
        assert!(out.iter().all(|&v| (v - 200.0).abs() < 1e-3));
        // A negative kernel weight can take values below 0: not clipped.
        let img = Image::from_shape_fn(
            (1, 3, 3),
            |(_, y, x)| if (y, x) == (1, 1) { 255.0 } else { 0.0 },
        );
        let out = filter2d(
            &img,
            &array![[0.0, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, -0.5]],
        )
        .expect("filter");
        assert_eq!(out[[0, 1, 1]], 382.5);
        assert_eq!(out[[0, 0, 0]], -127.5);
        assert!(filter2d(&Image::zeros((3, 0, 4)), &k)
            .expect("empty")
            .is_empty());
    }
}
