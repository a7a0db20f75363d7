//! The shard's connection table and op tokens: sessions live in generation-counted slots, and
//! every io_uring op carries a token naming its kind, its session slot and that session's data
//! epoch, so a completion for a closed session or an earlier data fd is recognised and dropped.

use super::{Conn, Shard};

/// What an op is for; the low byte of every token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    Accept = 1,
    Wake = 2,
    Tick = 3,
    CtrlIn = 4,
    CtrlOut = 5,
    DataListen = 6,
    DataConnect = 7,
    DataOut = 8,
    Job = 9,
    DataIn = 10,
    DataWrite = 11,
    DataRead = 12,
    DataSent = 13,
    UploadGrace = 14,
    Opened = 15,
    DataFill = 16,
    /// The shard's timer for password checks waiting for their account's turn.
    LoginTurn = 17,
    /// A path command's lookup (SIZE, MDTM, CWD, MLST, RNFR...) opened on the ring.
    Looked = 18,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Accept,
            2 => Kind::Wake,
            3 => Kind::Tick,
            4 => Kind::CtrlIn,
            5 => Kind::CtrlOut,
            6 => Kind::DataListen,
            7 => Kind::DataConnect,
            8 => Kind::DataOut,
            9 => Kind::Job,
            10 => Kind::DataIn,
            11 => Kind::DataWrite,
            12 => Kind::DataRead,
            13 => Kind::DataSent,
            14 => Kind::UploadGrace,
            15 => Kind::Opened,
            16 => Kind::DataFill,
            17 => Kind::LoginTurn,
            18 => Kind::Looked,
            _ => return None,
        })
    }
}

/// A session slot reference: index in the shard's table plus the slot's generation, so completions
/// for a closed session (or an earlier data socket) are recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConnRef {
    pub(super) index: u32,
    pub(super) generation: u32,
}

/// Token layout: index (24 bits) | generation (24) | data epoch (8) | kind (8).
pub(super) fn token(kind: Kind, conn: ConnRef, epoch: u8) -> u64 {
    u64::from(conn.index & 0xff_ffff) << 40
        | u64::from(conn.generation & 0xff_ffff) << 16
        | u64::from(epoch) << 8
        | kind as u64
}

pub(super) fn untoken(token: u64) -> (Option<Kind>, ConnRef, u8) {
    let conn = ConnRef {
        index: (token >> 40) as u32,
        generation: ((token >> 16) & 0xff_ffff) as u32,
    };
    (Kind::from_u8(token as u8), conn, (token >> 8) as u8)
}

/// One entry of the shard's connection table.
pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) conn: Option<Box<Conn>>,
}

impl Shard {
    pub(super) fn insert(&mut self, conn: Box<Conn>) -> ConnRef {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.conn = Some(conn);
        ConnRef {
            index,
            generation: slot.generation,
        }
    }

    pub(super) fn take(&mut self, r: ConnRef) -> Option<Box<Conn>> {
        let slot = self.slots.get_mut(r.index as usize)?;
        if slot.generation != r.generation {
            return None;
        }
        slot.conn.take()
    }

    pub(super) fn put(&mut self, r: ConnRef, conn: Box<Conn>) {
        self.slots[r.index as usize].conn = Some(conn);
    }

    pub(super) fn live_conns(&self) -> Vec<ConnRef> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(i, s)| ConnRef {
                index: i as u32,
                generation: s.generation,
            })
            .collect()
    }
}
