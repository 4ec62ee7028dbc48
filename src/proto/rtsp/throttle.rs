//! Password-guessing throttle for RTSP auth: failures counted per client address, a lockout
//! once too many arrive within the window.
//!
//! Owns: the per-address failure table (fixed capacity, so a scan from many addresses cannot
//! grow it) and the lockout rule. Must not: read the clock (`now_ms` is a parameter), log, or
//! decide the reply (the state machine in `session` answers 403 while an address is locked).
//!
//! The rule: `max_failures` wrong credentials from one address within `lockout_ms` of its
//! first counted failure lock it for `lockout_ms`; a success clears it. IPv6 clients are
//! keyed by their /64 (one host usually owns a whole /64, see [`peer_key`]).

use std::net::{IpAddr, Ipv6Addr};

/// Addresses tracked at once; when full, the entry idle the longest is reused.
pub const MAX_TRACKED_PEERS: usize = 256;

/// The address a per-client limit counts under: IPv4 as is (an IPv4-mapped IPv6 address as
/// its IPv4 address), IPv6 by its /64 prefix.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: IpAddr,
    failures: u32,
    window_start_ms: u64,
    locked_until_ms: u64,
    last_ms: u64,
}

/// Per-address auth failure counter with a lockout window.
#[derive(Debug)]
pub struct AuthThrottle {
    max_failures: u32,
    lockout_ms: u64,
    entries: Vec<Entry>,
}

impl AuthThrottle {
    /// `max_failures` = 0 disables the throttle.
    pub fn new(max_failures: u32, lockout_ms: u64) -> Self {
        AuthThrottle {
            max_failures,
            lockout_ms,
            entries: Vec::with_capacity(if max_failures == 0 {
                0
            } else {
                MAX_TRACKED_PEERS
            }),
        }
    }

    /// Milliseconds `ip` stays locked out, or None when it may try credentials now.
    pub fn locked_for_ms(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        let key = peer_key(ip);
        self.entries
            .iter()
            .find(|e| e.key == key && e.locked_until_ms > now_ms)
            .map(|e| e.locked_until_ms - now_ms)
    }

    /// Counts one wrong credential from `ip`; true when this failure locked it out.
    pub fn record_failure(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let key = peer_key(ip);
        let fresh = Entry {
            key,
            failures: 0,
            window_start_ms: now_ms,
            locked_until_ms: 0,
            last_ms: now_ms,
        };
        let i = match self.entries.iter().position(|e| e.key == key) {
            Some(i) => i,
            None if self.entries.len() < MAX_TRACKED_PEERS => {
                self.entries.push(fresh);
                self.entries.len() - 1
            }
            None => {
                // Full: reuse the entry heard from longest ago (a locked one last of all).
                let (i, _) = self
                    .entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| (e.locked_until_ms > now_ms, e.last_ms))
                    .unwrap_or((0, &fresh));
                if let Some(e) = self.entries.get_mut(i) {
                    *e = fresh;
                }
                i
            }
        };
        let Some(e) = self.entries.get_mut(i) else {
            return false;
        };
        e.last_ms = now_ms;
        if now_ms.saturating_sub(e.window_start_ms) > self.lockout_ms {
            e.failures = 0;
            e.window_start_ms = now_ms;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= self.max_failures {
            e.failures = 0;
            e.window_start_ms = now_ms;
            e.locked_until_ms = now_ms.saturating_add(self.lockout_ms);
            return true;
        }
        false
    }

    /// Right credentials from `ip`: its failures are forgotten.
    pub fn record_success(&mut self, ip: IpAddr) {
        let key = peer_key(ip);
        self.entries.retain(|e| e.key != key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn locks_after_max_failures_within_the_window_and_unlocks_after_it() {
        let mut t = AuthThrottle::new(3, 10_000);
        let a = ip("192.0.2.1");
        assert!(!t.record_failure(a, 1_000));
        assert!(!t.record_failure(a, 2_000));
        assert_eq!(t.locked_for_ms(a, 2_000), None);
        assert!(t.record_failure(a, 3_000));
        assert_eq!(t.locked_for_ms(a, 3_000), Some(10_000));
        assert_eq!(t.locked_for_ms(a, 12_999), Some(1));
        assert_eq!(t.locked_for_ms(a, 13_000), None);
        // Another address is not affected.
        assert_eq!(t.locked_for_ms(ip("192.0.2.2"), 3_000), None);
        // After the lockout the count starts again from zero.
        assert!(!t.record_failure(a, 13_500));
        assert!(!t.record_failure(a, 13_600));
        assert!(t.record_failure(a, 13_700));
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock() {
        let mut t = AuthThrottle::new(3, 10_000);
        let a = ip("192.0.2.1");
        for i in 0..20u64 {
            assert!(!t.record_failure(a, i * 6_000), "failure {i}");
            assert_eq!(t.locked_for_ms(a, i * 6_000), None);
        }
    }

    #[test]
    fn success_clears_and_zero_disables() {
        let mut t = AuthThrottle::new(2, 10_000);
        let a = ip("192.0.2.1");
        t.record_failure(a, 0);
        t.record_success(a);
        assert!(!t.record_failure(a, 1));
        let mut off = AuthThrottle::new(0, 10_000);
        for i in 0..100 {
            assert!(!off.record_failure(a, i));
        }
        assert_eq!(off.locked_for_ms(a, 100), None);
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let mut t = AuthThrottle::new(2, 10_000);
        t.record_failure(ip("2001:db8:1:2::1"), 0);
        assert!(t.record_failure(ip("2001:db8:1:2:ffff::9"), 1));
        assert!(t.locked_for_ms(ip("2001:db8:1:2::77"), 2).is_some());
        assert_eq!(t.locked_for_ms(ip("2001:db8:1:3::1"), 2), None);
        assert_eq!(peer_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(peer_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn table_is_bounded_and_a_scan_does_not_evict_a_locked_address() {
        let mut t = AuthThrottle::new(2, 60_000);
        let victim = ip("198.51.100.1");
        t.record_failure(victim, 0);
        assert!(t.record_failure(victim, 0));
        for i in 0..(MAX_TRACKED_PEERS as u32 * 4) {
            let a = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            assert!(!t.record_failure(a, 1 + u64::from(i)));
        }
        assert_eq!(t.entries.len(), MAX_TRACKED_PEERS);
        assert!(t.locked_for_ms(victim, 2_000).is_some());
    }
}
