//! The process's machinery: worker threads and their accept loops, listening sockets.

pub(crate) mod bind;
pub(crate) mod worker;
