//! The cluster policy as this leader last read it, so that a create costs no etcd read
//! for it. Held per leader term: the policy is written through the leader (followers
//! forward `PUT /cluster/policy`), and a replica that leads again reads it afresh.
//! A write invalidates it; a read that began before the write cannot put the old
//! value back (the generation moved on).

use persys_proto::ClusterPolicy;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct State {
    generation: u64,
    held: Option<(i64, ClusterPolicy)>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct PolicyCache {
    state: Mutex<State>,
}

impl PolicyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy held for `term`, if any.
    pub fn get(&self, term: i64) -> Option<ClusterPolicy> {
        match &self.lock().held {
            Some((t, p)) if *t == term => Some(p.clone()),
            _ => None,
        }
    }

    /// Call before reading etcd; pass the result to [`PolicyCache::fill`].
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Hold `policy` (read from etcd during `term`) unless a write happened since
    /// `generation`.
    pub fn fill(&self, generation: u64, term: i64, policy: ClusterPolicy) {
        let mut s = self.lock();
        if s.generation == generation {
            s.held = Some((term, policy));
        }
    }

    /// The policy was written: forget it.
    pub fn invalidate(&self) {
        let mut s = self.lock();
        s.generation += 1;
        s.held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_per_term_and_a_read_older_than_a_write_is_not_kept() {
        let c = PolicyCache::default();
        let g = c.generation();
        c.fill(g, 7, ClusterPolicy::default());
        assert!(c.get(7).is_some());
        assert!(c.get(8).is_none(), "another term reads afresh");
        let before_write = c.generation();
        c.invalidate();
        assert!(c.get(7).is_none());
        c.fill(before_write, 7, ClusterPolicy::default());
        assert!(
            c.get(7).is_none(),
            "a read from before the write is dropped"
        );
    }
}
