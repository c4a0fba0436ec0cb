//! Messaging: conversations, members, messages, cursors and receipts.
//!
//! `handlers` answers the requests of an authenticated session (one free
//! function per request, registered in `route`); `writer` is the single
//! writer thread that commits every change to conversation state. Messaging
//! pushes to people through [`crate::live`] and never imports the gateway or
//! the HTTP layer.

pub mod handlers;
pub mod reads;
pub mod receipts;
pub mod robots;
pub mod writer;
