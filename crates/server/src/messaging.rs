//! Messaging: conversations, members, messages, cursors and receipts.
//!
//! `handlers` answers the requests of an authenticated session (one free
//! function per request, registered in `route`); `writer` is the single
//! writer thread that commits every change to conversation state;
//! `forward` reads and checks forwarded messages and queues their copies;
//! `mass_send` sends one message to many people as direct messages. Messaging
//! pushes to people through [`crate::live`] and never imports the gateway or
//! the HTTP layer.

pub mod forward;
pub mod handlers;
pub mod mass_send;
pub mod reads;
pub mod receipts;
pub mod robots;
pub mod writer;
