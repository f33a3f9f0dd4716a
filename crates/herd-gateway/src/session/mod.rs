//! A client connection: PROXY header, TLS, sniffing HTTP/2 from HTTP/1.1, our HTTP/1.1 loop, the TCP relay, head timeouts.

pub(crate) mod accept;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod head_timeout;
pub(crate) mod tcp;
pub(crate) mod tls;
