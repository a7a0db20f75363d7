//! ringftpd: a thread-per-core io_uring FTP server with zero-copy data channels.
//!
//! Layers (dependencies point one way): `proto` (pure FTP) <- `vfs` (filesystem jail) <- `server`
//! (one session on one shard) -> `shard` (io_uring runtime, knows nothing of FTP).

pub mod auth;
pub mod cli;
pub mod config;
pub mod lifecycle;
pub mod logging;
pub mod privileges;
pub mod proto;
pub mod server;
pub mod shard;
pub mod sys;
pub mod tls;
pub mod vfs;
