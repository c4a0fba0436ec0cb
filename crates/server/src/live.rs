//! Live traffic: who is online (`hub`: sessions, presence, fan-out) and each
//! connection's bounded outbound queue (`outbound`). It sits below the
//! domains, which push through it, and above nothing but the protocol: it
//! knows no domain rules, no SQL and no sockets.

pub mod hub;
pub mod outbound;
