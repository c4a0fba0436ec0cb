//! Live traffic: who is online (`hub`: sessions, presence, fan-out) and each
//! connection's bounded outbound queue (`outbound`), the typing limiter
//! (`ratelimit`) and the process-wide traffic counters (`stats`). It sits below the
//! domains, which push through it, and above nothing but the protocol: it
//! knows no domain rules, no SQL and no sockets.

pub mod hub;
pub mod outbound;
pub mod ratelimit;
pub mod stats;
