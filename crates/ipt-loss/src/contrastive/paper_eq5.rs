//! The paper's Eq. 5: anchor patch `i1` of image `j`, positive patch `i2` of the same image, negatives the patch
//! at position `i2` in every other image `k ≠ j`; cosine similarity, divided here by `τ` (the paper has none:
//! `τ = 1`).
//!
//! `L = 1/(B·N²) · Σ_{j,i1,i2} [log Σ_{k≠j} exp(d(f^j_i1, f^k_i2)/τ) − d(f^j_i1, f^j_i2)/τ]`.

use tch::{Kind, Tensor};

use super::Layout;

/// The whole `M × M` similarity matrix at once, differentiated by autograd.
pub(super) fn one_shot(z: &Tensor, layout: Layout, tau: f64) -> Tensor {
    let (b, n) = (layout.batch, layout.tokens);
    let kind = z.kind();
    let d = (z.mm(&z.tr()) / tau).view([b, n, b, n]); // (j, i1, k, i2)
    let same_image = Tensor::eye(b, (Kind::Bool, z.device())).view([b, 1, b, 1]);
    let negatives = d
        .masked_fill(&same_image, f64::NEG_INFINITY)
        .logsumexp([2i64].as_slice(), false); // (j, i1, i2)
    let positive = d.diagonal(0, 0, 2).permute([2, 0, 1]); // (i1, i2, j) -> (j, i1, i2)
    (negatives - positive).mean(kind)
}

/// Rows `[r0, r0 + k)`: their share of the loss and `∂L/∂sim` for `sim` = their raw similarities `[k, M]`.
pub(super) fn block(sim: Tensor, r0: i64, layout: Layout, tau: f64) -> (Tensor, Tensor) {
    let (b, n, m) = (layout.batch, layout.tokens, layout.rows());
    let k = sim.size()[0];
    let kind = sim.kind();
    let images = layout.images_of_rows(r0, k, sim.device());
    let own = images.one_hot(b).to_kind(kind).unsqueeze(2); // [k, B, 1]: 1 on the anchor's image

    let mut l = sim;
    let _ = l.g_div_scalar_(tau);
    let mut l3 = l.view([k, b, n]); // (anchor, image, position i2)
    let positive = l3
        .gather(1, &images.view([k, 1, 1]).expand([k, 1, n], false), false)
        .squeeze_dim(1); // [k, N]
    let _ = l3.masked_fill_(&own.to_kind(Kind::Bool), f64::NEG_INFINITY);
    let lse = l3.logsumexp([1i64].as_slice(), true); // [k, 1, N]
    let value = (lse.squeeze_dim(1) - positive).sum(Kind::Double) / (m * n) as f64;

    // ∂L/∂d = 1/(M·N) · (softmax over the other images − [own image]); then ∂d/∂sim = 1/τ.
    let _ = l3.g_sub_(&lse);
    let _ = l3.exp_(); // own image: exp(−∞) = 0
    let _ = l3.g_sub_(&own);
    let _ = l.g_mul_scalar_(1.0 / ((m * n) as f64 * tau));
    (value, l)
}
