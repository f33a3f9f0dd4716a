//! Listening sockets: one per worker with SO_REUSEPORT, and the checks that refuse a port
//! another program already listens on.

use std::net::SocketAddr;

/// One listening socket per worker. With a fixed port each worker binds its own
/// (SO_REUSEPORT: the kernel spreads connections, no shared accept queue). With port 0
/// the first bind picks the port and the workers share that socket, because a second
/// reuseport bind to port 0 would get a different port.
///
/// SO_REUSEPORT would also let us join another process's listening socket, the kernel then
/// splitting connections between two programs; unless `share` (the listener's
/// `reuse_port`), a plain bind first proves nobody else listens there.
pub(crate) fn bind_listener(
    bind: &str,
    workers: usize,
    share: bool,
) -> std::io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    use std::net::ToSocketAddrs;
    let addr = bind
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    if addr.port() != 0 && !share {
        probe_unshared(addr)?;
    }
    let first = reuseport_socket(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        let s = if addr.port() == 0 {
            sockets[0].try_clone()?
        } else {
            reuseport_socket(bound)?
        };
        sockets.push(s);
    }
    Ok((bound, sockets))
}

/// Binds (without listening, without SO_REUSEPORT) and lets go: fails with AddrInUse when
/// any other socket listens on `addr`, as Linux refuses that bind even with SO_REUSEADDR.
fn probe_unshared(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into()).map_err(|e| {
        explain_in_use(
            e,
            "; stop it, or set reuse_port = true on this listener to share the port with it \
             (the kernel then splits connections between the two, e.g. during an upgrade)",
        )
    })
}

/// An AddrInUse that says what it means and what to do.
pub(crate) fn explain_in_use(e: std::io::Error, fix: &str) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        std::io::Error::new(
            e.kind(),
            format!("{e}: another process already listens there{fix}"),
        )
    } else {
        e
    }
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.port() != 0 {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}
