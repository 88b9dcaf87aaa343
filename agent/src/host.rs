//! Facts about this machine the agent registers with.

/// What the node reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct HostFacts {
    /// Host name.
    pub hostname: String,
    /// OS name (e.g. "Debian GNU/Linux 12").
    pub os_name: String,
    /// Kernel version.
    pub kernel_version: String,
    /// CPU cores.
    pub cpu_cores: f64,
    /// Memory in MB.
    pub memory_mb: u64,
}

impl HostFacts {
    /// Read from the OS, with the advertised capacity overridable.
    pub fn detect(cpu_override: Option<f64>, memory_override_mb: Option<u64>) -> Self {
        let cpu_cores = cpu_override.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
        });
        let memory_mb = memory_override_mb.unwrap_or_else(|| {
            let mut sys = sysinfo::System::new();
            sys.refresh_memory();
            sys.total_memory() / (1024 * 1024)
        });
        Self {
            hostname: sysinfo::System::host_name().unwrap_or_else(|| "localhost".into()),
            os_name: sysinfo::System::long_os_version()
                .or_else(sysinfo::System::name)
                .unwrap_or_default(),
            kernel_version: sysinfo::System::kernel_version().unwrap_or_default(),
            cpu_cores,
            memory_mb,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_the_detected_capacity() {
        let f = HostFacts::detect(Some(1.5), Some(512));
        assert_eq!((f.cpu_cores, f.memory_mb), (1.5, 512));
        assert!(!f.hostname.is_empty());
    }
}
