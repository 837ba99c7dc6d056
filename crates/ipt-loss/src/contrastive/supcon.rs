//! Supervised-contrastive form of the official code (MindSpore `SupConLoss`, contrast mode "all").
//!
//! With `ℓ_rs = z_r·z_s/τ`, `m_r = max_s ℓ_rs` (a constant for the gradient), `P(r)` the other tokens of r's
//! image (`|P| = N − 1`) and `S_r = Σ_{s≠r} exp(ℓ_rs − m_r)`:
//! `L = −(τ/τ_base)/M · Σ_r (1/|P|) Σ_{s∈P(r)} [ℓ_rs − m_r − log(S_r + 1e-8)]`.

use tch::{Kind, Tensor};

use super::{Layout, BASE_TEMPERATURE, LOG_EPS};

/// The whole `M × M` logit matrix at once, differentiated by autograd.
pub(super) fn one_shot(z: &Tensor, layout: Layout, tau: f64) -> Tensor {
    let (b, n, m) = (layout.batch, layout.tokens, layout.rows());
    let kind = z.kind();
    let logits = z.mm(&z.tr()) / tau;
    let shifted = &logits - logits.amax([1i64].as_slice(), true).detach();
    let eye = Tensor::eye(m, (Kind::Bool, z.device()));
    let denom = shifted
        .masked_fill(&eye, f64::NEG_INFINITY)
        .exp()
        .sum_dim_intlist([1i64].as_slice(), false, kind)
        + LOG_EPS;
    // Σ over the anchor's own image (its diagonal N×N block), then drop the anchor itself.
    let own_image = shifted
        .view([b, n, b, n])
        .diagonal(0, 0, 2) // [N, N, B]: (n, n', b)
        .sum_dim_intlist([1i64].as_slice(), false, kind) // [N, B]
        .tr()
        .reshape([m]);
    let positives = own_image - shifted.diagonal(0, 0, 1);
    let mean_log_prob_pos = positives / (n - 1) as f64 - denom.log();
    mean_log_prob_pos.mean(kind) * (-(tau / BASE_TEMPERATURE))
}

/// Rows `[r0, r0 + k)`: their share of the loss and `∂L/∂sim` for `sim` = their raw similarities `[k, M]`.
pub(super) fn block(sim: Tensor, r0: i64, layout: Layout, tau: f64) -> (Tensor, Tensor) {
    let (b, n, m) = (layout.batch, layout.tokens, layout.rows());
    let k = sim.size()[0];
    let kind = sim.kind();
    let factor = tau / BASE_TEMPERATURE;
    let images = layout.images_of_rows(r0, k, sim.device());

    let mut l = sim;
    let _ = l.g_div_scalar_(tau);
    let row_max = l.amax([1i64].as_slice(), true);
    let _ = l.g_sub_(&row_max);
    let own_image = l
        .view([k, b, n])
        .sum_dim_intlist([2i64].as_slice(), false, kind)
        .gather(1, &images.unsqueeze(1), false)
        .squeeze_dim(1);
    let positives = own_image - l.diagonal(r0, 0, 1);

    // From here on `l` holds exp(ℓ − m) with the anchor itself removed, then becomes the gradient.
    let _ = l.exp_();
    let _ = l.diagonal(r0, 0, 1).fill_(0.0);
    let denom = l.sum_dim_intlist([1i64].as_slice(), true, kind) + LOG_EPS;
    let mean_log_prob_pos = positives / (n - 1) as f64 - denom.log().squeeze_dim(1);
    let value = mean_log_prob_pos.sum(Kind::Double) * (-factor / m as f64);

    // ∂L/∂ℓ_rs = factor/M · (exp(ℓ_rs − m_r)/(S_r + ε)·[s≠r] − [s∈P(r)]/|P|); then ∂ℓ/∂sim = 1/τ.
    let _ = l.g_div_(&denom);
    let own = images.one_hot(b).to_kind(kind).unsqueeze(2) / (n - 1) as f64; // [k, B, 1]
    let _ = l.view([k, b, n]).g_sub_(&own);
    let _ = l.diagonal(r0, 0, 1).fill_(0.0);
    let _ = l.g_mul_scalar_(factor / (m as f64 * tau));
    (value, l)
}
