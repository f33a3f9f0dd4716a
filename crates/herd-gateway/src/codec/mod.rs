//! Wire shapes, no sockets: HTTP/1 framing, header rules, PROXY protocol, ClientHello SNI, request bodies.

pub(crate) mod body;
pub mod chunked;
pub mod h1;
pub(crate) mod headers;
pub mod proxy_protocol;
pub mod sni;
