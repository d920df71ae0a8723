//! What one admitted call holds while it runs, and settles when it ends.
//!
//! A call that passed idempotency and limits holds up to three things: the
//! idempotency claim (with a task renewing its lease), the token reservation
//! and, for a stream, a stream slot of its key and org. [`CallGuard`] owns
//! them all, wherever the call goes (the handler, then the stream relay's
//! task), and settles them exactly once:
//!
//! - [`CallGuard::finish`]: the call ended with a known outcome; the
//!   reservation settles on the tokens used, the response is stored under
//!   the key (or the key is released, when there is nothing final to store).
//! - dropped: the call was abandoned (an error path, a client that left, a
//!   stream ended by a deadline); the reservation settles on the estimate
//!   given to [`CallGuard::tokens_if_dropped`] and the key is released.
//!
//! The lease is renewed by its own task, every third of the lease, for as
//! long as the guard lives: a stream keeps its key even when the provider is
//! silent or the client reads slowly, and a crashed replica's claim still
//! expires after one lease.

use std::time::Duration;

use aigate_admission::{ClaimGuard, Reservation, StoredResponse};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::idempotency;
use crate::limits::{Limits, StreamPermit};

/// See the module docs.
#[must_use = "finish the call, or drop the guard to release what it holds"]
pub struct CallGuard {
    claim: Option<HeldClaim>,
    reservation: Option<Reservation>,
    _stream: Option<StreamPermit>,
    tokens_if_dropped: u32,
}

/// An idempotency claim and the task renewing its lease.
struct HeldClaim {
    key: String,
    stop: oneshot::Sender<()>,
    renewal: JoinHandle<ClaimGuard>,
}

impl HeldClaim {
    fn start(guard: ClaimGuard, key: String, lease: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let renewal = tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    // Asked to stop, or the owner is gone: hand the claim back.
                    _ = &mut stopped => return guard,
                    _ = tick.tick() => {
                        if let Err(e) = guard.renew(lease).await {
                            tracing::warn!("idempotency lease not renewed: {e}");
                        }
                    }
                }
            }
        });
        HeldClaim { key, stop, renewal }
    }

    /// Stops the renewal and takes the claim back (None if the task died).
    async fn stop(self) -> Option<ClaimGuard> {
        let _ = self.stop.send(());
        self.renewal.await.ok()
    }
}

impl CallGuard {
    /// Takes over a claim (if the request had an `Idempotency-Key`) and starts renewing it.
    pub fn new(claim: Option<(ClaimGuard, String)>, lease: Duration) -> Self {
        CallGuard {
            claim: claim.map(|(guard, key)| HeldClaim::start(guard, key, lease)),
            reservation: None,
            _stream: None,
            tokens_if_dropped: 0,
        }
    }

    pub fn reserve(&mut self, reservation: Option<Reservation>) {
        self.reservation = reservation;
    }

    pub fn hold_stream(&mut self, permit: StreamPermit) {
        self._stream = Some(permit);
    }

    /// The idempotency key this call runs under, if any.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.claim.as_ref().map(|c| c.key.as_str())
    }

    /// The tokens to settle on if the call is abandoned (what a stream produced so far).
    pub fn tokens_if_dropped(&mut self, tokens: u32) {
        self.tokens_if_dropped = tokens;
    }

    /// Ends the call: settles the reservation on `tokens`, stores `outcome` under the key, or
    /// releases the key when `outcome` is None. Returns whether a response was stored.
    /// Awaited before the client gets the end of the response, so an immediate retry sees
    /// the record.
    pub async fn finish(mut self, tokens: u32, outcome: Option<StoredResponse>) -> bool {
        Limits::settle(self.reservation.take(), tokens);
        match self.claim.take() {
            Some(claim) => match claim.stop().await {
                Some(guard) => idempotency::finish(guard, outcome).await,
                None => false,
            },
            None => false,
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        Limits::settle(self.reservation.take(), self.tokens_if_dropped);
        if let Some(claim) = self.claim.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Some(guard) = claim.stop().await {
                    idempotency::finish(guard, None).await;
                }
            });
        }
    }
}
