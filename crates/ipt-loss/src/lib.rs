//! Losses of IPT pre-training (paper Section 3.2; MindSpore `research/cv/IPT/src/loss.py`, `src/utils.py`): the supervised L1 term, the patch contrastive term on the
//! decoder tokens (the official supervised-contrastive form and the paper's Eq. 5), and [`PretrainLoss`], which
//! combines them as `L1 + λ·contrastive`.
//!
//! Following tch's convention, each loss has a panicking function and a fallible `f_` twin that returns
//! [`LossError`]. The contrastive loss can be computed in row blocks (`chunk`) with the value and gradient of
//! the one-shot computation but memory bounded by the block; `docs/losses.md` gives the formulas and the
//! measured cost.
//!
//! ```
//! use ipt_loss::{ContrastiveVariant, PretrainLoss};
//! use tch::{Device, Kind, Tensor};
//!
//! let out = Tensor::rand([2, 3, 8, 8], (Kind::Float, Device::Cpu)) * 255.0;
//! let target = Tensor::rand([2, 3, 8, 8], (Kind::Float, Device::Cpu)) * 255.0;
//! let tokens = Tensor::randn([2, 4, 6], (Kind::Float, Device::Cpu)).set_requires_grad(true);
//! let loss = PretrainLoss { chunk: Some(3), ..PretrainLoss::default() };
//! assert_eq!(loss.variant, ContrastiveVariant::SupCon);
//! let parts = loss.compute(&out, &target, Some(&tokens));
//! parts.total.backward();
//! assert!((parts.total.double_value(&[]) - (parts.l1 + 0.1 * parts.contrastive)).abs() < 1e-3);
//! ```

#![deny(missing_docs)]

pub mod contrastive;
mod error;
pub mod l1;
pub mod pretrain;

pub use contrastive::{contrastive_loss, f_contrastive_loss, ContrastiveVariant};
pub use error::LossError;
pub use l1::{f_l1_loss, l1_loss};
pub use pretrain::{LossParts, PretrainLoss};
