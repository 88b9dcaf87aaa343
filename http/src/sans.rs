//! Subject alternative names of a server certificate a binary issues itself.

/// This machine's host name, if it can be read.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// SANs of a server certificate: localhost and loopback (so local clients and tests
/// always verify), this host's name, then the operator's `extra` names, trimmed, blanks
/// dropped, each once.
pub fn server_sans(extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    sans.extend(hostname());
    for s in extra.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if !sans.iter().any(|x| x == s) {
            sans.push(s.to_string());
        }
    }
    sans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_always_and_extras_once() {
        let sans = server_sans(&["gw.example".into(), "localhost".into(), " ".into()]);
        assert_eq!(&sans[..3], ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(sans.iter().filter(|s| *s == "localhost").count(), 1);
        assert!(sans.contains(&"gw.example".to_string()));
        assert!(!sans.iter().any(|s| s.trim().is_empty()));
    }
}
