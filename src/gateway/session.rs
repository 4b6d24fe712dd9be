//! What the gateway's page shows of this session: transfers in progress,
//! documents inserted, sites followed. All of it is held in memory only
//! and forgotten when the node stops, so that nothing on disk records
//! what its user read or published; the page offers the list as a file
//! for a user who wants to keep it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::client::{Progress, ProgressTx};
use crate::keys::Link;

/// Inserted documents remembered, newest first; older ones are forgotten.
pub const MAX_INSERTED: usize = 200;
/// Sites followed at once.
pub const MAX_FOLLOWED: usize = 200;

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Fetch,
    Insert,
}

/// A transfer in progress, as the page shows it.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub direction: Direction,
    /// What it is: the URI fetched, or the file name inserted.
    pub what: String,
    pub progress: Progress,
    pub seconds: u64,
}

/// A document inserted this session.
#[derive(Debug, Clone)]
pub struct Inserted {
    pub link: Link,
    pub bytes: Option<u64>,
}

/// A site followed, and the newest version found of it (signed sites).
#[derive(Debug, Clone)]
pub struct Followed {
    pub link: Link,
    pub version: Option<u64>,
    /// When it was last looked for; `None`: not yet.
    pub checked: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    transfers: BTreeMap<u64, (Direction, String, watch::Receiver<Progress>, Instant)>,
    inserted: VecDeque<Inserted>,
    followed: Vec<Followed>,
}

/// The session's record, shared by every request of the gateway and
/// the proxy.
#[derive(Debug, Clone, Default)]
pub struct Session(Arc<Mutex<State>>);

/// A transfer's place on the page: it leaves the page when this is
/// dropped (the transfer done, failed or abandoned).
#[derive(Debug)]
pub struct Watched {
    session: Session,
    id: u64,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.session.lock().transfers.remove(&self.id);
    }
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Show a transfer on the page: its progress goes to the sender
    /// returned, until the [`Watched`] is dropped.
    pub fn watch(&self, direction: Direction, what: String) -> (Watched, ProgressTx) {
        let (tx, rx) = watch::channel(Progress::default());
        let mut s = self.lock();
        let id = s.next;
        s.next += 1;
        s.transfers
            .insert(id, (direction, what, rx, Instant::now()));
        (
            Watched {
                session: self.clone(),
                id,
            },
            tx,
        )
    }

    /// The transfers in progress, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.lock()
            .transfers
            .values()
            .map(|(direction, what, rx, started)| Transfer {
                direction: *direction,
                what: what.clone(),
                progress: *rx.borrow(),
                seconds: started.elapsed().as_secs(),
            })
            .collect()
    }

    /// Remember an insert.
    pub fn inserted(&self, link: Link, bytes: Option<u64>) {
        let mut s = self.lock();
        s.inserted.push_front(Inserted { link, bytes });
        s.inserted.truncate(MAX_INSERTED);
    }

    /// The documents inserted this session, newest first.
    pub fn inserts(&self) -> Vec<Inserted> {
        self.lock().inserted.iter().cloned().collect()
    }

    /// Follow a site; `false` if too many are followed already. Following
    /// one twice follows it once.
    pub fn follow(&self, link: Link) -> bool {
        let mut s = self.lock();
        let text = link.to_string();
        if s.followed.iter().any(|f| f.link.to_string() == text) {
            return true;
        }
        if s.followed.len() >= MAX_FOLLOWED {
            return false;
        }
        s.followed.push(Followed {
            link,
            version: None,
            checked: None,
        });
        true
    }

    /// Stop following a site.
    pub fn unfollow(&self, link: &Link) {
        let text = link.to_string();
        self.lock().followed.retain(|f| f.link.to_string() != text);
    }

    /// The sites followed, in the order they were followed.
    pub fn followed(&self) -> Vec<Followed> {
        self.lock().followed.clone()
    }

    /// Record the newest version found of a followed site.
    pub fn found(&self, link: &Link, version: Option<u64>) {
        let text = link.to_string();
        for f in self.lock().followed.iter_mut() {
            if f.link.to_string() == text {
                f.version = version.or(f.version);
                f.checked = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(s: &str) -> Link {
        s.parse().unwrap()
    }

    #[test]
    fn a_transfer_is_shown_until_its_watch_ends() {
        let session = Session::default();
        let (watched, tx) = session.watch(Direction::Fetch, "umbra:chk:x".into());
        tx.send_replace(Progress { done: 3, total: 8 });
        let shown = session.transfers();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].progress, Progress { done: 3, total: 8 });
        drop(watched);
        assert!(session.transfers().is_empty());
    }

    #[test]
    fn inserts_are_remembered_newest_first_and_only_so_many() {
        let session = Session::default();
        let uri = "umbra:ksk:a";
        for n in 0..MAX_INSERTED + 5 {
            session.inserted(link(uri), Some(n as u64));
        }
        let all = session.inserts();
        assert_eq!(all.len(), MAX_INSERTED);
        assert_eq!(all[0].bytes, Some(MAX_INSERTED as u64 + 4));
    }

    #[test]
    fn a_site_is_followed_once_and_can_be_left() {
        let session = Session::default();
        assert!(session.follow(link("umbra:ksk:a")));
        assert!(session.follow(link("umbra:ksk:a")));
        assert!(session.follow(link("umbra:ksk:b")));
        assert_eq!(session.followed().len(), 2);
        session.found(&link("umbra:ksk:b"), Some(4));
        assert_eq!(session.followed()[1].version, Some(4));
        session.unfollow(&link("umbra:ksk:a"));
        assert_eq!(session.followed().len(), 1);
    }
}
