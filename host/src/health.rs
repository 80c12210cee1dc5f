//! Links: whether each source, sink and table can reach what it talks to
//! (a Kafka cluster, a Redis server), for `/health`.
//!
//! A component may hold several connections (a Redis source has a reader
//! and an acker per database), so a link is made of parts: each connection
//! reports `up` or `down` for its own part, and the component is down while
//! any part is. The registry holds links weakly: a component removed by a
//! config reload drops its parts, and its link leaves `/health` with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

/// What one connection last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet (a sink connects at its first write).
    Connecting,
    /// Connected.
    Up,
    /// Cannot reach the other side, for this reason.
    Down(String),
}

#[derive(Debug)]
struct Part {
    state: LinkState,
    since: Instant,
    /// When it last reported up.
    last_up: Option<Instant>,
    /// Its last failure, kept after it recovers.
    last_error: Option<(String, Instant)>,
}

impl Part {
    fn new() -> Self {
        Self {
            state: LinkState::Connecting,
            since: Instant::now(),
            last_up: None,
            last_error: None,
        }
    }
}

#[derive(Debug, Default)]
struct Link {
    parts: Mutex<BTreeMap<String, Part>>,
}

/// The links of one Sluice process, by component (`"sinks.kafka"`).
#[derive(Debug, Clone, Default)]
pub struct Links {
    inner: Arc<Mutex<BTreeMap<String, Weak<Link>>>>,
}

/// One connection's part of a component's link; dropping it removes the
/// part.
#[derive(Debug)]
pub struct LinkPart {
    link: Arc<Link>,
    part: String,
}

/// A component's link, as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    /// `Down` if any part is down (with the first such part's reason), else
    /// `Up` if any part is up (a part that has not needed its connection
    /// yet does not hold the others back), else `Connecting`.
    pub state: LinkState,
    /// Seconds since the state shown began.
    pub for_secs: u64,
    /// Seconds since a part last reported up (`None`: never).
    pub last_ok_secs_ago: Option<u64>,
    /// The latest failure of any part, and how many seconds ago it was:
    /// kept after the link recovers.
    pub last_error: Option<(String, u64)>,
}

impl Links {
    /// A new part `part` of `component`'s link, connecting.
    pub fn part(&self, component: &str, part: &str) -> LinkPart {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let link = match map.get(component).and_then(Weak::upgrade) {
            Some(link) => link,
            None => {
                let link = Arc::new(Link::default());
                map.insert(component.to_owned(), Arc::downgrade(&link));
                link
            }
        };
        map.retain(|_, l| l.strong_count() > 0);
        link.parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(part.to_owned(), Part::new());
        LinkPart {
            link,
            part: part.to_owned(),
        }
    }

    /// Every live component's link.
    pub fn snapshot(&self) -> BTreeMap<String, LinkView> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter_map(|(name, link)| Some((name.clone(), link.upgrade()?.view()?)))
            .collect()
    }
}

impl Link {
    fn view(&self) -> Option<LinkView> {
        let parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        let rank = |s: &LinkState| match s {
            LinkState::Down(_) => 0,
            LinkState::Up => 1,
            LinkState::Connecting => 2,
        };
        let worst = parts.values().min_by_key(|p| rank(&p.state))?;
        // Up since the last part came up; otherwise since the worst began.
        let since = match worst.state {
            LinkState::Up => parts
                .values()
                .filter(|p| p.state == LinkState::Up)
                .map(|p| p.since)
                .max()?,
            _ => worst.since,
        };
        let last_up = parts.values().filter_map(|p| p.last_up).max();
        let last_error = parts
            .values()
            .filter_map(|p| p.last_error.as_ref())
            .max_by_key(|(_, at)| *at);
        Some(LinkView {
            state: worst.state.clone(),
            for_secs: since.elapsed().as_secs(),
            last_ok_secs_ago: last_up.map(|t| t.elapsed().as_secs()),
            last_error: last_error.map(|(e, at)| (e.clone(), at.elapsed().as_secs())),
        })
    }
}

impl LinkPart {
    /// Reports the connection up.
    pub fn up(&self) {
        self.set(LinkState::Up);
    }

    /// Reports the connection down, for `reason`. Returns whether it was
    /// not already down, so callers log a failure once, not on every retry.
    pub fn down(&self, reason: impl Into<String>) -> bool {
        self.set(LinkState::Down(reason.into()))
    }

    /// Whether the last report was `up`.
    pub fn is_up(&self) -> bool {
        self.with(|p| p.state == LinkState::Up)
    }

    /// Sets the state; returns whether the kind of state changed.
    fn set(&self, state: LinkState) -> bool {
        self.with(|p| {
            let now = Instant::now();
            let changed = std::mem::discriminant(&p.state) != std::mem::discriminant(&state);
            if changed {
                p.since = now;
            }
            match &state {
                LinkState::Up => p.last_up = Some(now),
                LinkState::Down(reason) => p.last_error = Some((reason.clone(), now)),
                LinkState::Connecting => {}
            }
            p.state = state;
            changed
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Part) -> T) -> T {
        let mut parts = self.link.parts.lock().unwrap_or_else(|p| p.into_inner());
        let part = parts.entry(self.part.clone()).or_insert_with(Part::new);
        f(part)
    }
}

impl Drop for LinkPart {
    fn drop(&mut self) {
        self.link
            .parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_down_while_any_part_is_and_leaves_with_its_parts() {
        let links = Links::default();
        let reader = links.part("sources.s", "reader");
        let acker = links.part("sources.s", "acker");
        assert_eq!(links.snapshot()["sources.s"].state, LinkState::Connecting);
        reader.up();
        assert_eq!(
            links.snapshot()["sources.s"].state,
            LinkState::Up,
            "a part not connected yet does not hold the link back"
        );
        acker.up();
        assert_eq!(links.snapshot()["sources.s"].state, LinkState::Up);
        assert!(acker.down("refused"));
        assert!(!acker.down("refused again"), "already down: not news");
        assert_eq!(
            links.snapshot()["sources.s"].state,
            LinkState::Down("refused again".into())
        );
        acker.up();
        let view = &links.snapshot()["sources.s"];
        assert_eq!(view.state, LinkState::Up);
        assert_eq!(view.last_ok_secs_ago, Some(0));
        assert_eq!(
            view.last_error,
            Some(("refused again".into(), 0)),
            "the last error outlives the outage"
        );
        drop(acker);
        assert_eq!(links.snapshot()["sources.s"].state, LinkState::Up);
        drop(reader);
        assert!(links.snapshot().is_empty(), "a removed component leaves");
    }
}
