//! The film reads, kept in memory as the JSON bodies they are answered with and their strong
//! `ETag`s (`Representation`, computed once per version, so a 304 costs a comparison): one film
//! (`GET /api/v1/films/{id}`) and list pages (`GET /api/v1/films`). A read served from here
//! costs no query.
//!
//! **Invalidation is exact and comes first.** Every write path says what it changed
//! (`FilmChange`) after its commit and before it answers, so the writer's next read, on the
//! same instance, reads the database again. With several instances (`REDIS_URL`) the change
//! is also published on the revocation channel, and every instance forgets it when the message
//! arrives (the revocation's propagation: milliseconds). While that channel is not confirmed
//! for longer than `REVOCATION_MAX_STALENESS_MS`, no instance serves from here (it reads the
//! database, as without a cache), and each (re)subscription and periodic resync empties it:
//! a change whose message was lost is forgotten within that bound, or at the next resync
//! (60 s) when only its publisher could not reach Redis.
//!
//! **A read that raced a write never stores what it read.** Each store has an epoch that every
//! invalidation bumps under the store's lock; a read takes the epoch before its query (a
//! `Ticket`) and keeps its answer only if the epoch has not moved (checked under the same
//! lock). So an answer read before a commit cannot land after the commit's invalidation.
//!
//! **Memory is bounded** by a byte budget per store (bodies and keys); past it, entries are
//! evicted in the hash map's (random) order.
//!
//! Without a cache entry nothing is wrong, only slower: when in doubt, forget more.

use std::{
    collections::HashMap,
    hash::Hash,
    ops::RangeInclusive,
    sync::{Arc, Mutex, PoisonError},
};

pub use crate::cluster::revocation_channel::FilmChange;
use crate::{
    cluster::revocation_channel::{Notice, RevocationChannel},
    web::conditional::Representation,
};

/// Single films: about 300 bytes each, so ~6 000 films.
const FILM_BUDGET_BYTES: usize = 2 << 20;
/// List pages: up to ~30 KB each at 100 films, ~6 KB at the default 20.
const PAGE_BUDGET_BYTES: usize = 6 << 20;
/// What an entry costs beside its body: the key, the map's slot, the `Bytes` header.
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// A list page as asked for: the same query gives the same body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub search: Option<Box<str>>,
    pub limit: i64,
    pub offset: i64,
    /// The cursor's position (keyset paging), if the page was asked for by cursor.
    pub after_id: Option<i64>,
}

/// Taken before the query; lets its answer in only if nothing was invalidated meanwhile.
/// `None`: the cache may not be trusted now (the broadcast is stale), keep nothing.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(Option<u64>);

pub struct ReadCache {
    /// `READ_CACHE=false`: every read goes to the database, nothing is kept.
    enabled: bool,
    films: Mutex<Store<i64>>,
    /// Each page with the ids it shows (first to last: pages are ordered by id).
    pages: Mutex<Store<PageKey>>,
    /// Lets `GET /` pick a random film without a query.
    highest_film_id: Mutex<HighestId>,
    /// Several instances: where changes are announced, and whether they are being heard.
    channel: Option<Arc<RevocationChannel>>,
}

impl ReadCache {
    pub fn new(enabled: bool, channel: Option<Arc<RevocationChannel>>) -> Self {
        Self {
            enabled,
            films: Mutex::new(Store::new(FILM_BUDGET_BYTES)),
            pages: Mutex::new(Store::new(PAGE_BUDGET_BYTES)),
            highest_film_id: Mutex::new(HighestId::default()),
            channel,
        }
    }

    /// The film's body if kept, else a ticket to keep the one about to be read.
    pub fn film(&self, id: i64) -> Result<Representation, Ticket> {
        self.lookup(&self.films, &id)
    }

    pub fn keep_film(&self, id: i64, ticket: Ticket, body: Representation) {
        keep(&self.films, ticket, id, body, None);
    }

    pub fn page(&self, key: &PageKey) -> Result<Representation, Ticket> {
        self.lookup(&self.pages, key)
    }

    /// `ids`: the first and last film the page shows (`None` when it is empty).
    pub fn keep_page(
        &self,
        key: PageKey,
        ticket: Ticket,
        body: Representation,
        ids: Option<RangeInclusive<i64>>,
    ) {
        keep(&self.pages, ticket, key, body, ids);
    }

    /// The highest film id if kept, else a ticket to keep the one about to be read.
    pub fn highest_film_id(&self) -> Result<i64, Ticket> {
        if !self.is_trusted() {
            return Err(Ticket(None));
        }
        let highest = lock(&self.highest_film_id);
        highest.value.ok_or(Ticket(Some(highest.epoch)))
    }

    pub fn keep_highest_film_id(&self, ticket: Ticket, id: i64) {
        let Ticket(Some(epoch)) = ticket else { return };
        let mut highest = lock(&self.highest_film_id);
        if highest.epoch == epoch {
            highest.value = Some(id);
        }
    }

    /// A write committed: forgotten here at once, and announced to the other instances.
    pub async fn changed(&self, change: FilmChange) {
        self.forget(&change);
        if let Some(channel) = &self.channel {
            channel.publish(&Notice::Films(change)).await;
        }
    }

    /// A change heard from the broadcast (or made here).
    pub fn forget(&self, change: &FilmChange) {
        let mut films = lock(&self.films);
        let mut pages = lock(&self.pages);
        match *change {
            FilmChange::Votes(id) => {
                films.invalidate(&id);
                pages.remove_where(|_, shown| shown.as_ref().is_some_and(|r| r.contains(&id)));
            }
            FilmChange::Film(id) => {
                films.invalidate(&id);
                pages.remove_where(|_, _| true);
                lock(&self.highest_film_id).forget();
            }
            FilmChange::Everything => {
                films.remove_where(|_, _| true);
                pages.remove_where(|_, _| true);
                lock(&self.highest_film_id).forget();
            }
        }
    }

    /// After the broadcast was (re)joined or resynchronized: whatever it missed is forgotten.
    pub fn clear(&self) {
        self.forget(&FilmChange::Everything);
    }

    fn lookup<K: Eq + Hash>(
        &self,
        store: &Mutex<Store<K>>,
        key: &K,
    ) -> Result<Representation, Ticket> {
        if !self.is_trusted() {
            return Err(Ticket(None));
        }
        let store = lock(store);
        match store.entries.get(key) {
            Some(entry) => Ok(entry.body.clone()),
            None => Err(Ticket(Some(store.epoch))),
        }
    }

    fn is_trusted(&self) -> bool {
        self.enabled
            && self
                .channel
                .as_ref()
                .is_none_or(|channel| channel.is_fresh())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn keep<K: Eq + Hash + Clone>(
    store: &Mutex<Store<K>>,
    ticket: Ticket,
    key: K,
    body: Representation,
    shown: Option<RangeInclusive<i64>>,
) {
    let Ticket(Some(epoch)) = ticket else { return };
    let mut store = lock(store);
    if store.epoch == epoch {
        store.insert(key, Entry { body, shown });
    }
}

/// The highest film id as read, with the same epoch rule as a `Store`: a film added or
/// deleted (`FilmChange::Film`) forgets it, and a read that raced that change is not kept.
#[derive(Default)]
struct HighestId {
    value: Option<i64>,
    epoch: u64,
}

impl HighestId {
    fn forget(&mut self) {
        self.epoch += 1;
        self.value = None;
    }
}

struct Entry {
    body: Representation,
    shown: Option<RangeInclusive<i64>>,
}

impl Entry {
    fn cost(&self) -> usize {
        self.body.body_len() + ENTRY_OVERHEAD_BYTES
    }
}

struct Store<K> {
    entries: HashMap<K, Entry>,
    epoch: u64,
    bytes: usize,
    budget: usize,
}

impl<K: Eq + Hash + Clone> Store<K> {
    fn new(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            epoch: 0,
            bytes: 0,
            budget,
        }
    }

    fn insert(&mut self, key: K, entry: Entry) {
        let cost = entry.cost();
        if cost > self.budget {
            return;
        }
        while self.bytes + cost > self.budget {
            // A map's iteration order is its hashing's: the evicted entry is a random one.
            let Some(victim) = self.entries.keys().next().cloned() else {
                break;
            };
            self.remove(&victim);
        }
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.cost();
        }
        self.bytes += cost;
    }

    fn remove(&mut self, key: &K) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.cost();
        }
    }

    /// The entry for `key` goes; see `remove_where` for the epoch.
    fn invalidate(&mut self, key: &K) {
        self.epoch += 1;
        self.remove(key);
    }

    /// Bumps the epoch even when nothing matches: a read in flight may be about to keep it.
    fn remove_where(&mut self, mut doomed: impl FnMut(&K, &Option<RangeInclusive<i64>>) -> bool) {
        self.epoch += 1;
        let mut freed = 0;
        self.entries.retain(|key, entry| {
            let remove = doomed(key, &entry.shown);
            if remove {
                freed += entry.cost();
            }
            !remove
        });
        self.bytes -= freed;
    }
}
