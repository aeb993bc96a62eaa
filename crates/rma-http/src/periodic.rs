//! Background loops that tick until their role stops.

use std::future::Future;
use std::time::Duration;

use crate::Shutdown;

/// Runs `f` every `period` (the first time at once) until `shutdown` fires. A tick that runs
/// late is not made up for: the next comes a whole period after it.
pub async fn every<F, Fut>(period: Duration, mut shutdown: Shutdown, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => f().await,
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn ticks_until_shutdown() {
        let (stop, shutdown) = Shutdown::new();
        let n = Arc::new(AtomicU32::new(0));
        let n2 = n.clone();
        let task = tokio::spawn(every(Duration::from_secs(1), shutdown, move || {
            let n = n2.clone();
            async move {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(n.load(Ordering::Relaxed), 3, "at 0, 1 and 2 s");
        let _ = stop.send(true);
        task.await.expect("stops");
    }
}
