//! A pause: the cgroup frozen for as long as a [`Pause`] lives, and left as
//! it was found when someone else had frozen it.

use std::time::{Duration, Instant};

use super::{Cgroup, Error, FreezerState, Result};

impl Cgroup {
    /// Freezes the cgroup for as long as the returned [`Pause`] lives.
    ///
    /// A cgroup that is already frozen or freezing (paused by its owner, say with
    /// `runc pause`) is left as it is: the pause waits for it to be frozen, does
    /// not thaw it on a timeout, and does not thaw it when it ends.
    pub fn pause(&self, timeout: Duration) -> Result<Pause<'_>> {
        let since = Instant::now();
        let ours = match self.state()? {
            FreezerState::Thawed => {
                self.freeze(timeout)?;
                true
            }
            FreezerState::Frozen => false,
            FreezerState::Freezing => {
                if !self.wait_frozen(since + timeout)? {
                    return Err(Error::Timeout {
                        dir: self.dir.clone(),
                        timeout,
                    });
                }
                false
            }
        };
        Ok(Pause {
            cgroup: self,
            since,
            ours,
            resumed: false,
        })
    }
}

/// A frozen cgroup, thawed when this is dropped (or [`Pause::resume`]d) unless it
/// was already frozen before the pause began.
#[must_use = "dropping a Pause thaws the cgroup at once"]
pub struct Pause<'a> {
    cgroup: &'a Cgroup,
    since: Instant,
    ours: bool,
    resumed: bool,
}

impl Pause<'_> {
    /// How long the cgroup has been frozen by this pause (from the freeze request).
    pub fn frozen_for(&self) -> Duration {
        self.since.elapsed()
    }

    /// Whether the cgroup was already frozen by someone else, so that ending this
    /// pause leaves it frozen.
    pub fn was_frozen(&self) -> bool {
        !self.ours
    }

    /// Ends the pause: thaws the cgroup (unless it was frozen before) and returns
    /// how long it was frozen.
    pub fn resume(mut self) -> Result<Duration> {
        let frozen = self.frozen_for();
        self.resumed = true;
        if self.ours {
            self.cgroup.thaw()?;
        }
        tracing::debug!(cgroup = %self.cgroup.dir.display(), frozen_ms = frozen.as_millis() as u64,
            thawed = self.ours, "pause ended");
        Ok(frozen)
    }
}

impl Drop for Pause<'_> {
    fn drop(&mut self) {
        if self.resumed || !self.ours {
            return;
        }
        if let Err(e) = self.cgroup.thaw() {
            tracing::error!(cgroup = %self.cgroup.dir.display(), error = %e,
                "failed to thaw the session at the end of a pause");
        }
    }
}
