//! The process around the shards: signals read by one control thread, and the service manager
//! told what state the server is in. Shards never see a signal: every thread inherits the mask
//! `Signals::block` sets before any of them starts.

pub mod notify;
pub mod signals;

pub use notify::Notifier;
pub use signals::{Signal, Signals};
