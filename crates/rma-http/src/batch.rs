//! Writing many tasks' messages to one connection in batches, so under load many share one
//! system call:
//! - [`write_batched`]: a writer task's loop over a queue (both ends of the worker link);
//! - [`SharedSink`]: no writer task — the task that finds the connection free writes what is
//!   queued, its own message included, and whoever queues meanwhile leaves theirs to it (both
//!   ends of the router link). A lone message goes out from its own task, without waking
//!   another.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{Sink, SinkExt};
use tokio::sync::{Notify, mpsc};

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

/// The connection of a [`SharedSink`] is closed (or failed): nothing more goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection is closed")]
pub struct Closed;

/// A sink that many tasks write to without a writer task: each message is queued, and the task
/// that finds the sink free writes everything queued — at most `batch` messages a flush — until
/// the queue is empty; a task that finds it busy leaves its message to the one writing.
///
/// A writer that is cancelled mid-write loses nothing: messages not yet handed to the sink go
/// back to the front of the queue, and a task is spawned to write them and flush.
pub struct SharedSink<S, M> {
    queue: Mutex<VecDeque<M>>,
    sink: tokio::sync::Mutex<Option<S>>,
    /// Something was handed to the sink and not yet flushed.
    dirty: AtomicBool,
    closed: AtomicBool,
    failed: Notify,
    batch: usize,
}

impl<S, M> SharedSink<S, M>
where
    S: Sink<M> + Unpin + Send + 'static,
    M: Send + 'static,
{
    /// Shares `sink`, flushing at least every `batch` messages.
    pub fn new(sink: S, batch: usize) -> Arc<Self> {
        Arc::new(SharedSink {
            queue: Mutex::new(VecDeque::new()),
            sink: tokio::sync::Mutex::new(Some(sink)),
            dirty: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            failed: Notify::new(),
            batch: batch.max(1),
        })
    }

    /// Whether it is closed or has failed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves once a write has failed or it was closed.
    pub async fn closed(&self) {
        let notified = self.failed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
    }

    fn lock_queue(&self) -> MutexGuard<'_, VecDeque<M>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self) {
        self.closed.store(true, Ordering::Release);
        self.failed.notify_waiters();
    }

    /// Queues `msg` and writes what is queued unless another task is writing (which then
    /// writes it). `Err` once the connection is closed or a write fails.
    pub async fn send(self: &Arc<Self>, msg: M) -> Result<(), Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        self.lock_queue().push_back(msg);
        self.drain().await
    }

    /// Writes what is queued, then closes the sink; later sends fail.
    pub async fn close(self: &Arc<Self>) {
        let mut guard = self.sink.lock().await;
        self.fail();
        if let Some(mut sink) = guard.take() {
            let rest: Vec<M> = self.lock_queue().drain(..).collect();
            for m in rest {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        }
    }

    async fn drain(self: &Arc<Self>) -> Result<(), Closed> {
        loop {
            {
                let Ok(mut guard) = self.sink.try_lock() else {
                    // Its holder looks at the queue again after it lets go.
                    return Ok(());
                };
                let Some(sink) = guard.as_mut() else {
                    return Err(Closed);
                };
                if self.write_queued(sink).await.is_err() {
                    *guard = None;
                    self.fail();
                    return Err(Closed);
                }
            }
            // A message queued while the sink was held, by a task that then found it busy.
            if self.lock_queue().is_empty() {
                return Ok(());
            }
        }
    }

    async fn write_queued(self: &Arc<Self>, sink: &mut S) -> Result<(), ()> {
        let mut resume = Resume {
            shared: self,
            rest: VecDeque::new(),
            done: false,
        };
        loop {
            {
                let mut q = self.lock_queue();
                let n = q.len().min(self.batch);
                resume.rest.extend(q.drain(..n));
            }
            if resume.rest.is_empty() && !self.dirty.load(Ordering::Acquire) {
                resume.done = true;
                return Ok(());
            }
            self.dirty.store(true, Ordering::Release);
            while !resume.rest.is_empty() {
                // Taken off the queue only once the sink can take it: a cancelled wait for room
                // loses nothing.
                let ready = futures_util::future::poll_fn(|cx| sink.poll_ready_unpin(cx)).await;
                let sent = ready.and_then(|()| match resume.rest.pop_front() {
                    Some(m) => sink.start_send_unpin(m),
                    None => Ok(()),
                });
                if sent.is_err() {
                    resume.done = true;
                    return Err(());
                }
            }
            if sink.flush().await.is_err() {
                resume.done = true;
                return Err(());
            }
            self.dirty.store(false, Ordering::Release);
        }
    }
}

/// What a writer had taken off the queue; if the writer is cancelled, it goes back to the front
/// and a task finishes the writing.
struct Resume<'a, S, M>
where
    S: Sink<M> + Unpin + Send + 'static,
    M: Send + 'static,
{
    shared: &'a Arc<SharedSink<S, M>>,
    rest: VecDeque<M>,
    done: bool,
}

impl<S, M> Drop for Resume<'_, S, M>
where
    S: Sink<M> + Unpin + Send + 'static,
    M: Send + 'static,
{
    fn drop(&mut self) {
        if self.done {
            return;
        }
        {
            let mut q = self.shared.lock_queue();
            while let Some(m) = self.rest.pop_back() {
                q.push_front(m);
            }
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            rt.spawn(async move {
                let _ = shared.drain().await;
            });
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

    /// Records what it is sent; `poll_ready` is pending while the gate is shut.
    #[derive(Default)]
    struct Gate {
        sent: Vec<u32>,
        shut: Arc<Mutex<(bool, Option<std::task::Waker>)>>,
    }

    impl Sink<u32> for Gate {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
            let mut shut = self.shut.lock().expect("gate");
            if shut.0 {
                shut.1 = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        }
        fn start_send(mut self: Pin<&mut Self>, item: u32) -> Result<(), ()> {
            self.sent.push(item);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_shared_sink_writes_each_message_once_in_order_and_closes() {
        let shared = SharedSink::new(Recorder::default(), 4);
        for i in 0..10 {
            shared.send(i).await.expect("sent");
        }
        // Alone, each send writes and flushes its own message.
        {
            let guard = shared.sink.lock().await;
            let sink = guard.as_ref().expect("open");
            assert_eq!(sink.sent, (0..10).collect::<Vec<_>>());
            assert_eq!(sink.flushes, 10);
        }
        shared.close().await;
        assert!(shared.is_closed());
        assert_eq!(shared.send(11).await, Err(Closed));
        shared.closed().await;
    }

    #[tokio::test]
    async fn messages_queued_while_another_writes_go_out_with_its_next_batch() {
        let shared = SharedSink::new(Recorder::default(), 64);
        {
            // Someone is writing: sends only queue.
            let _busy = shared.sink.lock().await;
            for i in 0..5 {
                shared.send(i).await.expect("queued");
            }
        }
        // The next send writes everything queued, with one flush.
        shared.send(5).await.expect("sent");
        let guard = shared.sink.lock().await;
        let sink = guard.as_ref().expect("open");
        assert_eq!(sink.sent, (0..6).collect::<Vec<_>>());
        assert_eq!(sink.flushes, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_cancelled_while_waiting_for_room_loses_nothing() {
        let shut = Arc::new(Mutex::new((true, None)));
        let gate = Gate {
            shut: shut.clone(),
            ..Gate::default()
        };
        let shared = SharedSink::new(gate, 64);
        {
            let _busy = shared.sink.lock().await;
            for i in 0..3 {
                shared.send(i).await.expect("queued");
            }
        }
        // This writer takes the queue, finds no room, and gives up (a timed-out caller).
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(20), shared.send(3)).await;
        assert!(gave_up.is_err());
        // Room again: the task spawned for what it held writes all of it, in order.
        {
            let mut shut = shut.lock().expect("gate");
            shut.0 = false;
            if let Some(w) = shut.1.take() {
                w.wake();
            }
        }
        let mut sent = Vec::new();
        for _ in 0..1000 {
            tokio::task::yield_now().await;
            let guard = shared.sink.lock().await;
            sent = guard.as_ref().expect("open").sent.clone();
            if sent.len() == 4 {
                break;
            }
        }
        assert_eq!(sent, vec![0, 1, 2, 3]);
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
