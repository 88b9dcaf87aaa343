//! Several URLs of one service (the scheduler's replicas): calls go to the one that
//! answered last and move on to the next when it cannot serve.

use std::sync::atomic::{AtomicUsize, Ordering};

/// An ordered set of base URLs with a sticky current one.
#[derive(Debug)]
pub struct Endpoints {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Endpoints {
    /// The non-empty entries of `urls`, without trailing slashes.
    pub fn new(urls: &[String]) -> Self {
        Self {
            urls: urls
                .iter()
                .map(|u| u.trim().trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            current: AtomicUsize::new(0),
        }
    }

    /// Whether there is no URL at all.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Every URL once, in the order to try them: the current one first.
    pub fn in_order(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        let n = self.urls.len();
        let start = self.current.load(Ordering::Relaxed);
        (0..n).map(move |k| {
            let i = (start + k) % n;
            (i, self.urls[i].as_str())
        })
    }

    /// Remember that `i` answered: the next call starts there.
    pub fn settle(&self, i: usize) {
        self.current.store(i, Ordering::Relaxed);
    }

    /// All URLs, for messages.
    pub fn list(&self) -> String {
        self.urls.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_start_at_the_last_url_that_answered_and_wrap_around() {
        let e = Endpoints::new(&[
            "https://a/".into(),
            " ".into(),
            "https://b".into(),
            "https://c".into(),
        ]);
        let order = |e: &Endpoints| e.in_order().map(|(_, u)| u.to_string()).collect::<Vec<_>>();
        assert_eq!(order(&e), ["https://a", "https://b", "https://c"]);
        e.settle(2);
        assert_eq!(order(&e), ["https://c", "https://a", "https://b"]);
        assert!(!e.is_empty());
        assert!(Endpoints::new(&[String::new()]).is_empty());
    }
}
