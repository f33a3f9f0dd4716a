//! Ports for instances, from the agent's range: the next one, round the range, that no
//! instance of this agent holds and that nothing else listens on now.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

pub struct Ports {
    first: u16,
    last: u16,
    state: Mutex<(u16, BTreeSet<u16>)>,
}

impl Ports {
    pub fn new(first: u16, last: u16) -> Ports {
        Ports {
            first,
            last,
            state: Mutex::new((first, BTreeSet::new())),
        }
    }

    pub fn range(&self) -> [u16; 2] {
        [self.first, self.last]
    }

    /// A free port, held until `release`; None when the whole range is taken.
    pub fn take(&self) -> Option<u16> {
        let mut guard = self.state.lock().ok()?;
        let (cursor, held) = &mut *guard;
        let span = u32::from(self.last - self.first) + 1;
        for _ in 0..span {
            let p = *cursor;
            *cursor = if p >= self.last { self.first } else { p + 1 };
            if held.contains(&p) {
                continue;
            }
            let free = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p))).is_ok();
            if free {
                held.insert(p);
                return Some(p);
            }
        }
        None
    }

    /// Hold a port an adopted instance already listens on; false when another instance
    /// of this agent holds it.
    pub fn claim(&self, p: u16) -> bool {
        self.state.lock().is_ok_and(|mut g| g.1.insert(p))
    }

    pub fn release(&self, ports: impl IntoIterator<Item = u16>) {
        if let Ok(mut g) = self.state.lock() {
            for p in ports {
                g.1.remove(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_handed_out_once_skip_busy_ones_and_come_back_when_released() {
        let busy = TcpListener::bind("0.0.0.0:0").unwrap();
        let b = busy.local_addr().unwrap().port();
        // A range of three around the busy port (the others are very likely free).
        let (first, last) = (
            b.saturating_sub(1).max(1024),
            b.saturating_sub(1).max(1024) + 2,
        );
        let ports = Ports::new(first, last);
        let mut got = Vec::new();
        while let Some(p) = ports.take() {
            got.push(p);
        }
        assert!(
            !got.contains(&b),
            "a port someone listens on is skipped: {got:?}"
        );
        assert!(got.len() <= 2, "{got:?}");
        let Some(&one) = got.first() else {
            return; // both neighbours busy on this machine: nothing more to check
        };
        assert_eq!(ports.take(), None, "every free port is held");
        ports.release([one]);
        assert_eq!(ports.take(), Some(one));
    }
}
