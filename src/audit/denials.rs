//! Repeated denials from one client, summarized: within a window, the first denial of each
//! (client, actor, action) is recorded in full and the rest are only counted; when the window
//! closes, one row says how many there were.
//!
//! So a client sending bad tokens as fast as it can costs the audit table two rows per window,
//! not one per request, and the memory for it is bounded: past `MAX_TRACKED` open windows,
//! denials are counted per action without a client, and summarized the same way.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{AuditAction, AuditEvent, Outcome};
use crate::security::client_ip::ClientKey;

/// About 200 bytes each: a few megabytes at most, whatever the number of clients.
const MAX_TRACKED: usize = 10_000;

/// Whether a denial is recorded in full or only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The first of its window: its own row, with request id and route.
    InFull,
    /// Counted into its window's summary row.
    Counted,
}

/// Denials are told apart by client, by the user they came from (a known user's 403 is never
/// folded into someone else's), and by action (401, 403 or 429).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DenialKey {
    client: ClientKey,
    actor_id: Option<i64>,
    action: AuditAction,
}

struct Window {
    opened: Instant,
    first: AuditEvent,
    repeats: u64,
}

struct Overflow {
    opened: Instant,
    repeats: u64,
}

#[derive(Default)]
struct Windows {
    open: HashMap<DenialKey, Window>,
    overflow: HashMap<AuditAction, Overflow>,
}

pub struct DenialWindows {
    length: Duration,
    windows: Mutex<Windows>,
}

impl DenialWindows {
    pub fn new(length: Duration) -> Self {
        Self {
            length,
            windows: Mutex::default(),
        }
    }

    /// Opens a window for `event` (a denial from `client`) or counts it into the open one.
    pub fn admit(&self, client: ClientKey, event: &AuditEvent, now: Instant) -> Admission {
        let key = DenialKey {
            client,
            actor_id: event.actor_id,
            action: event.action,
        };
        let mut windows = self.lock();
        let Windows { open, overflow } = &mut *windows;
        if let Some(window) = open.get_mut(&key) {
            window.repeats += 1;
        } else if open.len() < MAX_TRACKED {
            let first = event.clone();
            open.insert(
                key,
                Window {
                    opened: now,
                    first,
                    repeats: 0,
                },
            );
            return Admission::InFull;
        } else {
            overflow
                .entry(event.action)
                .or_insert(Overflow {
                    opened: now,
                    repeats: 0,
                })
                .repeats += 1;
        }
        metrics::counter!("audit_denials_summarized_total", "action" => event.action.as_str())
            .increment(1);
        Admission::Counted
    }

    /// Closes the windows opened at least one window length before `now`, and returns a
    /// summary event for each that counted repeats.
    pub fn close_expired(&self, now: Instant) -> Vec<AuditEvent> {
        let expired = |opened: Instant| now.saturating_duration_since(opened) >= self.length;
        self.close(expired)
    }

    /// Closes every window (the service is stopping).
    pub fn close_all(&self) -> Vec<AuditEvent> {
        self.close(|_| true)
    }

    fn close(&self, closes: impl Fn(Instant) -> bool) -> Vec<AuditEvent> {
        let seconds = self.length.as_secs();
        let mut summaries = Vec::new();
        let mut windows = self.lock();
        windows.open.retain(|_, window| {
            if !closes(window.opened) {
                return true;
            }
            if window.repeats > 0 {
                summaries.push(summary_of(window, seconds));
            }
            false
        });
        windows.overflow.retain(|action, overflow| {
            if !closes(overflow.opened) {
                return true;
            }
            summaries.push(AuditEvent {
                action: *action,
                outcome: Outcome::Denied,
                actor_id: None,
                target: None,
                reason: Some(format!(
                    "repeated {} more {} within {seconds} s by clients past the \
                     {MAX_TRACKED} tracked one by one",
                    overflow.repeats,
                    times(overflow.repeats),
                )),
                request_id: None,
                client_ip: None,
            });
            false
        });
        summaries
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        // Counters stay consistent whatever panicked while holding the lock.
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The window's first event, minus its request id (the reason names it), with the count.
fn summary_of(window: &Window, seconds: u64) -> AuditEvent {
    let first = &window.first;
    let first_request = first.request_id.as_deref().unwrap_or("unknown");
    AuditEvent {
        request_id: None,
        reason: Some(format!(
            "repeated {} more {} within {seconds} s of request {first_request}",
            window.repeats,
            times(window.repeats),
        )),
        ..first.clone()
    }
}

fn times(count: u64) -> &'static str {
    if count == 1 { "time" } else { "times" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditTarget;

    const WINDOW: Duration = Duration::from_secs(60);

    fn denial(action: AuditAction, actor_id: Option<i64>) -> AuditEvent {
        AuditEvent {
            action,
            outcome: Outcome::Denied,
            actor_id,
            target: Some(AuditTarget::Endpoint {
                method: "GET".to_owned(),
                route: "/api/v1/users/me".to_owned(),
            }),
            reason: None,
            request_id: Some("first-request".to_owned()),
            client_ip: Some("192.0.2.7".to_owned()),
        }
    }

    fn client(last: u8) -> ClientKey {
        ClientKey::V4([192, 0, 2, last].into())
    }

    #[test]
    fn the_first_denial_of_a_window_is_recorded_in_full_and_the_rest_summarized_once() {
        let windows = DenialWindows::new(WINDOW);
        let start = Instant::now();
        let event = denial(AuditAction::Unauthenticated, None);
        assert_eq!(windows.admit(client(7), &event, start), Admission::InFull);
        for _ in 0..1000 {
            assert_eq!(windows.admit(client(7), &event, start), Admission::Counted);
        }
        assert!(windows.close_expired(start + WINDOW / 2).is_empty());

        let summaries = windows.close_expired(start + WINDOW);
        assert_eq!(summaries.len(), 1);
        let summary = &summaries[0];
        assert_eq!(
            summary.reason.as_deref(),
            Some("repeated 1000 more times within 60 s of request first-request")
        );
        assert_eq!(summary.request_id, None);
        assert_eq!(summary.client_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(summary.target, event.target);
        assert_eq!(
            windows.admit(client(7), &event, start + WINDOW),
            Admission::InFull
        );
    }

    #[test]
    fn a_window_without_repeats_closes_without_a_summary() {
        let windows = DenialWindows::new(WINDOW);
        let start = Instant::now();
        windows.admit(client(7), &denial(AuditAction::Forbidden, Some(3)), start);
        assert!(windows.close_expired(start + WINDOW).is_empty());
    }

    #[test]
    fn clients_users_and_actions_each_have_their_own_window() {
        let windows = DenialWindows::new(WINDOW);
        let now = Instant::now();
        for (ip, event) in [
            (client(7), denial(AuditAction::Unauthenticated, None)),
            (client(8), denial(AuditAction::Unauthenticated, None)),
            (client(7), denial(AuditAction::RateLimited, None)),
            (client(7), denial(AuditAction::Forbidden, Some(1))),
            (client(7), denial(AuditAction::Forbidden, Some(2))),
        ] {
            assert_eq!(windows.admit(ip, &event, now), Admission::InFull);
        }
    }

    #[test]
    fn past_the_tracked_clients_denials_are_counted_per_action_and_summarized() {
        let windows = DenialWindows::new(WINDOW);
        let start = Instant::now();
        let event = denial(AuditAction::Unauthenticated, None);
        for n in 0..MAX_TRACKED {
            let ip = ClientKey::V4(u32::try_from(n).unwrap().into());
            assert_eq!(windows.admit(ip, &event, start), Admission::InFull);
        }
        for _ in 0..5 {
            assert_eq!(windows.admit(client(7), &event, start), Admission::Counted);
        }

        let summaries = windows.close_all();
        assert_eq!(summaries.len(), 1, "windows without repeats add nothing");
        assert_eq!(summaries[0].client_ip, None);
        assert!(
            summaries[0]
                .reason
                .as_deref()
                .unwrap()
                .starts_with("repeated 5 more times within 60 s by clients past")
        );
        assert_eq!(windows.admit(client(7), &event, start), Admission::InFull);
    }
}
