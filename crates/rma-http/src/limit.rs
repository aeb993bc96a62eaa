//! Keyed rate limits (GCRA, governor): per address and per client at the router, per client at
//! a coordinator for client keys used there directly.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A keyed limiter (per address, per client); `None` inside when limits are off.
#[derive(Clone)]
pub struct Limiter<K: Hash + Eq + Clone = IpAddr>(Option<Arc<DefaultKeyedRateLimiter<K>>>);

impl<K: Hash + Eq + Clone> std::fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Limiter(on)"
        } else {
            "Limiter(off)"
        })
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `per_second` requests a second per key, bursts of `burst`; off when `per_second` is 0.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let Some(rate) = NonZeroU32::new(per_second) else {
            return Limiter(None);
        };
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Limiter(Some(Arc::new(RateLimiter::keyed(
            Quota::per_second(rate).allow_burst(burst),
        ))))
    }

    /// Lets `key` through, or says how long it must wait.
    pub fn check(&self, key: K) -> Result<(), std::time::Duration> {
        match &self.0 {
            None => Ok(()),
            Some(l) => l
                .check_key(&key)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// Takes `n` units (kilobytes of upload) from `key`'s bucket, or says how long it must
    /// wait; more than the whole bucket at once waits an hour.
    pub fn check_n(&self, key: K, n: u32) -> Result<(), std::time::Duration> {
        let (Some(l), Some(n)) = (&self.0, NonZeroU32::new(n)) else {
            return Ok(());
        };
        match l.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            Err(_) => Err(std::time::Duration::from_secs(3600)),
        }
    }

    /// An hourly quota of `per_hour` units per key (all of it may be used at once); off at 0.
    pub fn hourly(per_hour: u32) -> Self {
        let Some(n) = NonZeroU32::new(per_hour) else {
            return Limiter(None);
        };
        Limiter(Some(Arc::new(RateLimiter::keyed(
            Quota::per_hour(n).allow_burst(n),
        ))))
    }

    /// Forgets addresses whose buckets are full again (bounds memory); run now and then.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.0 {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_bucket() {
        let l: Limiter = Limiter::new(1, 3);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
        }
        let wait = l.check(a).expect_err("over the burst");
        assert!(wait <= std::time::Duration::from_secs(1));
        assert!(l.check(b).is_ok(), "another address is served");
        let off: Limiter = Limiter::new(0, 0);
        for _ in 0..1000 {
            assert!(off.check(a).is_ok());
        }
    }
}
