//! Resource fit: does the request fit in what a node has left?

use super::Candidate;
use persys_proto::Resources;

/// What a node has left (millicores, MB), never negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Free {
    pub cpu: u64,
    pub memory: u64,
}

/// Which resource is short, by how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// Needs `need` millicores, `free` are left.
    Cpu { need: u64, free: u64 },
    /// Needs `need` MB, `free` are left.
    Memory { need: u64, free: u64 },
}

/// Capacity minus allocation; an over-allocated node has nothing left.
pub(crate) fn free(candidate: &Candidate<'_>) -> Free {
    Free {
        cpu: candidate
            .node
            .cpu_millis()
            .saturating_sub(candidate.allocated.cpu),
        memory: candidate
            .node
            .total_memory
            .saturating_sub(candidate.allocated.memory),
    }
}

/// A zero request means "unspecified" and always fits that resource.
pub(crate) fn fits(request: &Resources, free: Free) -> Result<(), Shortfall> {
    if request.cpu > 0 && free.cpu < request.cpu {
        return Err(Shortfall::Cpu {
            need: request.cpu,
            free: free.cpu,
        });
    }
    if request.memory > 0 && free.memory < request.memory {
        return Err(Shortfall::Memory {
            need: request.memory,
            free: free.memory,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu: u64, memory: u64) -> Resources {
        Resources { cpu, memory }
    }

    #[test]
    fn exact_fit_is_accepted() {
        let free = Free {
            cpu: 500,
            memory: 256,
        };
        assert_eq!(fits(&res(500, 256), free), Ok(()));
    }

    #[test]
    fn cpu_shortfall_reports_need_and_free() {
        let free = Free {
            cpu: 400,
            memory: 1024,
        };
        assert_eq!(
            fits(&res(600, 1), free),
            Err(Shortfall::Cpu {
                need: 600,
                free: 400
            })
        );
    }

    #[test]
    fn memory_shortfall_reports_need_and_free() {
        let free = Free {
            cpu: 4000,
            memory: 100,
        };
        assert_eq!(
            fits(&res(1, 200), free),
            Err(Shortfall::Memory {
                need: 200,
                free: 100
            })
        );
    }

    #[test]
    fn zero_request_fits_a_full_node() {
        assert_eq!(fits(&res(0, 0), Free { cpu: 0, memory: 0 }), Ok(()));
    }
}
