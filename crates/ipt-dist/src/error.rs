//! The errors of ipt-dist. A failed collective says which operation failed on which rank, why (a lost peer, a
//! timeout, ...), and which peer it was where c10d's message tells.

use crate::env::EnvError;
use crate::ffi::{CxxError, CxxErrorKind};
use std::fmt;
use thiserror::Error;

/// Why a rendezvous or a collective failed, from c10d's exception class and message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A peer went away: its connection was closed, reset or refused (the process died or the network broke).
    PeerLost,
    /// Nothing happened within the timeout (a peer stopped, hung or never came).
    Timeout,
    /// The rendezvous port is taken on rank 0's machine (another run or program listens on it).
    PortInUse,
    /// The rendezvous store failed (rank 0, which hosts it, is unreachable).
    Store,
    /// Anything else (bad arguments, backend errors).
    Other,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::PeerLost => "a peer was lost",
            Failure::Timeout => "timed out",
            Failure::PortInUse => {
                "the rendezvous port is already in use on this machine (another run or program \
                 listens on it; choose a free one with MASTER_PORT or --master-port)"
            }
            Failure::Store => "the rendezvous store failed",
            Failure::Other => "error",
        })
    }
}

/// The peer a failure points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's address as c10d reported it (`host:port`), when it did.
    pub addr: Option<String>,
    /// The ranks that can be that peer: exactly one when it is known (e.g. the other rank of a world of 2, or the
    /// only rank on the reported host), several when only the host is known.
    pub ranks: Vec<usize>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranks = match self.ranks.as_slice() {
            [] => None,
            [r] => Some(format!("rank {r}")),
            rs => Some(format!(
                "one of ranks {}",
                rs.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        match (&self.addr, ranks) {
            (Some(a), Some(r)) => write!(f, "{r} ({a})"),
            (Some(a), None) => write!(f, "the peer at {a}"),
            (None, Some(r)) => f.write_str(&r),
            (None, None) => f.write_str("an unknown peer"),
        }
    }
}

/// Everything that can go wrong in ipt-dist.
#[derive(Debug, Error)]
pub enum DistError {
    /// The launcher's environment is incomplete or inconsistent.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// NCCL was asked for, but this build has no NCCL part.
    #[error(
        "the NCCL backend is not available: ipt-dist was built without it (it needs the CUDA libtorch, \
         `cargo xtask setup --cuda`, with its NCCL and CUDA headers; see docs/distributed.md)"
    )]
    NoNccl,
    /// The address Gloo should bind to could not be worked out.
    #[error("cannot find this machine's address towards MASTER_ADDR={master}: {reason} (set GLOO_SOCKET_IFNAME to the network interface to use)")]
    LocalAddress {
        /// `MASTER_ADDR`.
        master: String,
        /// What failed.
        reason: String,
    },
    /// Joining the group failed.
    #[error(
        "rank {rank} of {world} could not join the process group at {master}: {failure}: {message}"
    )]
    Connect {
        /// This rank.
        rank: usize,
        /// The world size.
        world: usize,
        /// `MASTER_ADDR:MASTER_PORT`.
        master: String,
        /// Why.
        failure: Failure,
        /// c10d's message.
        message: String,
    },
    /// A collective failed.
    #[error("{op} failed on rank {rank} of {world}: {failure}{}: {message}", peer.as_ref().map(|p| format!(", {p}")).unwrap_or_default())]
    Collective {
        /// The operation (`all_reduce`, `broadcast`, `barrier`).
        op: &'static str,
        /// This rank.
        rank: usize,
        /// The world size.
        world: usize,
        /// Why.
        failure: Failure,
        /// The peer the failure points at, when it can be told.
        peer: Option<Peer>,
        /// c10d's message.
        message: String,
    },
    /// The ranks disagree on which gradients exist or on their sizes, so their buckets would not line up.
    #[error(
        "the ranks disagree on the gradient set (tensor indices {indices:?}): every rank must pass the same \
         tensors, defined or undefined alike, with the same sizes"
    )]
    LayoutMismatch {
        /// Indices of the tensors that differ (the first few).
        indices: Vec<usize>,
    },
    /// A tensor operation around a collective failed.
    #[error(transparent)]
    Tensor(#[from] tch::TchError),
    /// An argument the caller passed is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl DistError {
    /// The lost or silent peer, for a failed collective that names one.
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            DistError::Collective { peer, .. } => peer.as_ref(),
            _ => None,
        }
    }

    /// Why a rendezvous or collective failed (`None` for the other errors).
    pub fn failure(&self) -> Option<Failure> {
        match self {
            DistError::Connect { failure, .. } | DistError::Collective { failure, .. } => {
                Some(*failure)
            }
            _ => None,
        }
    }
}

/// Classify a c10d exception. Gloo reports a dead peer as a network error ("Connection closed by peer",
/// "Connection reset by peer") and a silent one as "Timed out"; the store's errors are their own class.
pub(crate) fn classify(e: &CxxError) -> Failure {
    let m = e.message.to_ascii_lowercase();
    if m.contains("eaddrinuse") || m.contains("address already in use") {
        Failure::PortInUse
    } else if m.contains("timed out") || m.contains("timeout") {
        Failure::Timeout
    } else if m.contains("closed by peer")
        || m.contains("reset by peer")
        || m.contains("connection refused")
        || m.contains("broken pipe")
        || m.contains("connection closed")
    {
        Failure::PeerLost
    } else {
        match e.kind {
            CxxErrorKind::Network => Failure::PeerLost,
            CxxErrorKind::Store => Failure::Store,
            _ => Failure::Other,
        }
    }
}

/// The first `[ip]:port` in a Gloo message such as "Connection closed by peer [127.0.0.1]:45678" or "Read error
/// [10.0.0.2]:4527: Connection reset by peer" (bracketed source locations are skipped). The port is shown as
/// Gloo prints it. Returns the host and the `host:port` text.
pub(crate) fn peer_addr(message: &str) -> Option<(std::net::IpAddr, String)> {
    let mut rest = message;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let close = after.find(']')?;
        let host = &after[..close];
        let tail = &after[close + 1..];
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            let port: String = tail
                .strip_prefix(':')
                .map(|p| p.chars().take_while(|c| c.is_ascii_digit()).collect())
                .unwrap_or_default();
            let text = if port.is_empty() {
                host.to_string()
            } else {
                format!("{host}:{port}")
            };
            return Some((ip, text));
        }
        rest = tail;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cxx(kind: CxxErrorKind, m: &str) -> CxxError {
        CxxError {
            kind,
            message: m.to_string(),
        }
    }

    #[test]
    fn gloo_messages_are_classified() {
        assert_eq!(
            classify(&cxx(
                CxxErrorKind::Network,
                "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4321"
            )),
            Failure::PeerLost
        );
        assert_eq!(
            classify(&cxx(
                CxxErrorKind::Other,
                "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 3000ms for recv operation to complete"
            )),
            Failure::Timeout
        );
        assert_eq!(
            classify(&cxx(CxxErrorKind::Store, "store gone")),
            Failure::Store
        );
        // c10d's TCPStore when MASTER_PORT is taken: a network error, but no peer is involved
        assert_eq!(
            classify(&cxx(
                CxxErrorKind::Network,
                "The server socket has failed to listen on any local network address. port: 29500, \
                 useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use"
            )),
            Failure::PortInUse
        );
        assert_eq!(
            classify(&cxx(CxxErrorKind::Other, "bad shape")),
            Failure::Other
        );
    }

    #[test]
    fn peer_addresses_are_parsed() {
        assert_eq!(
            peer_addr("x] Connection closed by peer [10.1.2.3]:29501 more").map(|a| a.1),
            Some("10.1.2.3:29501".to_string())
        );
        assert_eq!(
            peer_addr("Connection reset by peer [::1]:7"),
            Some(("::1".parse().unwrap(), "::1:7".to_string()))
        );
        assert_eq!(
            peer_addr("[/pytorch/gloo/tcp/pair.cc:538] Read error [127.0.0.1]:4527: Connection reset by peer")
                .map(|a| a.1),
            Some("127.0.0.1:4527".to_string())
        );
        assert_eq!(
            peer_addr("[/x/unbound_buffer.cc:78] Timed out waiting 3000ms"),
            None
        );
    }

    #[test]
    fn collective_errors_name_the_peer() {
        let e = DistError::Collective {
            op: "all_reduce",
            rank: 0,
            world: 2,
            failure: Failure::PeerLost,
            peer: Some(Peer {
                addr: Some("127.0.0.1:4321".into()),
                ranks: vec![1],
            }),
            message: "Connection closed by peer".into(),
        };
        assert_eq!(
            e.to_string(),
            "all_reduce failed on rank 0 of 2: a peer was lost, rank 1 (127.0.0.1:4321): Connection closed by peer"
        );
    }
}
