//! A writer task's loop that batches: what is already queued goes out before one flush, so under
//! load many messages share one system call. Both ends of the link write this way.

use futures_util::{Sink, SinkExt};
use tokio::sync::mpsc;

/// Writes what `rx` yields to `sink`, `map`ped: each round takes everything already queued (at
/// most `batch` messages), then flushes once. Returns when `rx` is closed, when `map` answers
/// `None` (after flushing what came before it), or when the sink fails.
pub async fn write_batched<T, M, S>(
    rx: &mut mpsc::Receiver<T>,
    sink: &mut S,
    batch: usize,
    mut map: impl FnMut(T) -> Option<M>,
) where
    S: Sink<M> + Unpin,
{
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut batched = 0;
        while let Some(item) = next.take() {
            let Some(msg) = map(item) else {
                let _ = sink.flush().await;
                return;
            };
            if sink.feed(msg).await.is_err() {
                return;
            }
            batched += 1;
            if batched < batch {
                next = rx.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Records what it is sent and how many flushes it took.
    #[derive(Default)]
    struct Recorder {
        sent: Vec<u32>,
        flushes: usize,
    }

    impl Sink<u32> for Recorder {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(mut self: Pin<&mut Self>, item: u32) -> Result<(), ()> {
            self.sent.push(item);
            Ok(())
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn what_is_queued_goes_out_in_order_with_one_flush_per_batch() {
        let (tx, mut rx) = mpsc::channel(100);
        for i in 0..10 {
            tx.send(i).await.expect("queued");
        }
        drop(tx);
        let mut sink = Recorder::default();
        write_batched(&mut rx, &mut sink, 4, Some).await;
        assert_eq!(sink.sent, (0..10).collect::<Vec<_>>());
        // 10 messages, at most 4 a batch: 3 flushes.
        assert_eq!(sink.flushes, 3);
    }

    #[tokio::test]
    async fn a_stop_flushes_what_came_before_it_and_sends_nothing_after() {
        let (tx, mut rx) = mpsc::channel(100);
        for i in [1, 2, 0, 3] {
            tx.send(i).await.expect("queued");
        }
        let mut sink = Recorder::default();
        write_batched(&mut rx, &mut sink, 64, |i| (i != 0).then_some(i)).await;
        assert_eq!(sink.sent, vec![1, 2]);
        assert_eq!(sink.flushes, 1);
    }
}
