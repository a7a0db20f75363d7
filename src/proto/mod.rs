//! The FTP protocol as plain data and pure functions: no sockets, files, clocks or `unsafe`.
//!
//! Address codecs use `std::net` address *values* (as quinn-proto does); nothing here opens a socket.

pub mod addr;
pub mod command;
pub mod entry;
pub mod error;
pub mod line;
pub mod listing;
pub mod path;
pub mod reply;
pub mod session;
