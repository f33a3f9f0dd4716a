//! Worker threads and their accept loops.

pub(crate) mod worker;
