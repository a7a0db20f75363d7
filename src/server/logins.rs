//! Password checks, on threads of their own: argon2 is slow on purpose (tens of milliseconds of
//! CPU each), so checks never share a queue with the stats, listings and upload commits of the
//! helper pool, and their queue is bounded. A full queue refuses the attempt at once rather than
//! letting a password-guessing flood build a backlog that real users would wait behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};

use super::fsworker::{Done, Mailbox, Workers};
use super::limits::{Checked, Limits};
use crate::auth::{Access, Users};
use crate::proto::session::Rights;
use crate::vfs::Root;

/// Checks waiting for a login thread, across all shards; more are refused at once. At ~20 ms a
/// check (release build) this is about a second of work for one thread.
pub(super) const LOGIN_QUEUE: usize = 64;

/// Named users and the roots opened for them (one directory fd per distinct root, shared).
pub(super) struct Accounts {
    /// Swapped whole by a reload; a check in progress keeps the table it started with.
    users: Mutex<Option<Arc<Users>>>,
    roots: Mutex<HashMap<PathBuf, Arc<Root>>>,
}

impl Accounts {
    pub(super) fn new(users: Option<Users>) -> Accounts {
        Accounts {
            users: Mutex::new(users.map(Arc::new)),
            roots: Mutex::new(HashMap::new()),
        }
    }

    /// A reloaded users file: logins checked from now on use it. Roots opened for users that
    /// are gone are closed once no session holds them.
    pub(super) fn replace(&self, users: Option<Users>) {
        *self.users.lock().unwrap_or_else(|e| e.into_inner()) = users.map(Arc::new);
        self.roots.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Verify a login (argon2: tens of milliseconds, so only ever on a helper thread).
    fn login(&self, user: &[u8], password: &[u8]) -> Option<(Rights, Arc<Root>)> {
        // Hash outside the lock: a reload never waits for a password check.
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let user = users.as_ref()?.verify(user, password)?;
        let root = {
            let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
            match roots.get(&user.root) {
                Some(r) => Arc::clone(r),
                None => {
                    let r = match Root::open(&user.root) {
                        Ok(r) => Arc::new(r),
                        Err(e) => {
                            log::error!(
                                "root {} of user {:?}: {e}",
                                user.root.display(),
                                user.name
                            );
                            return None;
                        }
                    };
                    roots.insert(user.root.clone(), Arc::clone(&r));
                    r
                }
            }
        };
        let modify = user.access == Access::ReadWrite;
        Some((
            Rights {
                modify,
                upload: user.upload,
                download: user.download,
                drop_box: None,
                tls: user.tls,
            },
            root,
        ))
    }
}

struct Check {
    user: Vec<u8>,
    password: Vec<u8>,
    token: u64,
    reply_to: usize,
}

/// A handle to submit password checks; cheap to clone into every shard.
#[derive(Clone)]
pub(super) struct LoginPool {
    tx: Sender<Check>,
}

impl LoginPool {
    /// Start `threads` login threads. Each check's end is reported to `limits` (the account's
    /// throttle) by the thread that ran it, so a session that went away meanwhile cannot leave
    /// its account counted as checking.
    pub(super) fn start(
        threads: usize,
        mailboxes: Vec<Mailbox<(u64, Done)>>,
        accounts: Arc<Accounts>,
        limits: Arc<Limits>,
    ) -> std::io::Result<(LoginPool, Workers)> {
        let (tx, rx) = crossbeam_channel::bounded::<Check>(LOGIN_QUEUE);
        let mailboxes = Arc::new(mailboxes);
        let mut handles = Vec::new();
        for i in 0..threads {
            let rx = rx.clone();
            let (mailboxes, accounts, limits) = (
                Arc::clone(&mailboxes),
                Arc::clone(&accounts),
                Arc::clone(&limits),
            );
            handles.push(
                thread::Builder::new()
                    .name(format!("ringftpd-login{i}"))
                    .spawn(move || {
                        // Ends when every shard (and so every LoginPool handle) is gone.
                        while let Ok(check) = rx.recv() {
                            let result = accounts.login(&check.user, &check.password);
                            let how = if result.is_some() {
                                Checked::Passed
                            } else {
                                Checked::Failed
                            };
                            limits.end_check(&check.user, how, Instant::now());
                            let _ =
                                mailboxes[check.reply_to].post((check.token, Done::Login(result)));
                        }
                    })?,
            );
        }
        Ok((LoginPool { tx }, Workers::new(handles)))
    }

    /// Queue a check of `user`'s `password` for shard `shard`; its `Done::Login` comes back
    /// with `token`. A full queue gives `user` back: the attempt was not checked.
    pub(super) fn submit(
        &self,
        shard: usize,
        token: u64,
        user: Vec<u8>,
        password: Vec<u8>,
    ) -> Result<(), Vec<u8>> {
        match self.tx.try_send(Check {
            user,
            password,
            token,
            reply_to: shard,
        }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => Err(c.user),
        }
    }
}
