//! Whether a request that failed before any response is sent again: a pure decision on
//! what happened and what the request allows, so that its table is tested on its own.

/// How many times a request is re-sent on a fresh connection without counting against the
/// server or the retry budget (a kept-alive connection the server had closed).
pub const MAX_STALE_RESENDS: u32 = 4;

/// How the send failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// Nothing was written: the connection was found closed first. The request came back.
    Unsent,
    /// The client's own request body broke off or was malformed.
    ClientBody,
    /// A kept-alive connection failed right after the request was written, as a connection
    /// the server had already closed does. `returned`: the request came back whole (it had
    /// no body to lose).
    Stale { returned: bool },
    /// The server failed the request before answering. `returned` as above.
    Server { returned: bool },
}

/// What the request allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// The connection came from the pool (a fresh one cannot be stale).
    pub reused: bool,
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE: sending twice does no more than once.
    pub idempotent: bool,
    /// The route allows more than one attempt (`retries` > 0).
    pub retries: bool,
    /// Free re-sends already spent on stale connections.
    pub stale_resends: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it again now, free: not counted against the server or the retry budget.
    Resend,
    /// Count a failed attempt against this server and go on to the next one if the budget
    /// allows; `request_kept`: the request itself is still in hand (else only a replay copy
    /// can be sent, if there is one).
    NextAttempt { request_kept: bool },
    /// Stop: the failure is the client's.
    ClientFault,
}

pub fn decide(failure: SendFailure, a: Allowance) -> Decision {
    let free = a.stale_resends < MAX_STALE_RESENDS;
    match failure {
        SendFailure::Unsent if a.reused && free => Decision::Resend,
        SendFailure::Unsent => Decision::NextAttempt { request_kept: true },
        SendFailure::ClientBody => Decision::ClientFault,
        SendFailure::Stale { returned } => {
            let kept = returned && a.idempotent && a.retries;
            if kept && free {
                Decision::Resend
            } else {
                Decision::NextAttempt { request_kept: kept }
            }
        }
        SendFailure::Server { returned } => Decision::NextAttempt {
            request_kept: returned && a.idempotent && a.retries,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of (what failed) × (reused connection) × (idempotent) × (retries
    /// allowed) × (free re-sends left), with the decision each must get.
    #[test]
    fn the_retry_table() {
        use Decision::*;
        use SendFailure::*;
        let failures = [
            Unsent,
            ClientBody,
            Stale { returned: true },
            Stale { returned: false },
            Server { returned: true },
            Server { returned: false },
        ];
        let mut rows = 0;
        for f in failures {
            for reused in [false, true] {
                for idempotent in [false, true] {
                    for retries in [false, true] {
                        for stale_resends in [0, MAX_STALE_RESENDS] {
                            let a = Allowance {
                                reused,
                                idempotent,
                                retries,
                                stale_resends,
                            };
                            let free = stale_resends < MAX_STALE_RESENDS;
                            let want = match f {
                                // Never written: resend free on a pooled connection, else
                                // count it but keep the request (nothing reached the server).
                                Unsent if reused && free => Resend,
                                Unsent => NextAttempt { request_kept: true },
                                ClientBody => ClientFault,
                                // Written: only an idempotent, bodiless request that came
                                // back may go again, and only when retries are allowed.
                                Stale { returned: true } if idempotent && retries && free => Resend,
                                Stale { returned: true } | Server { returned: true } => {
                                    NextAttempt {
                                        request_kept: idempotent && retries,
                                    }
                                }
                                Stale { returned: false } | Server { returned: false } => {
                                    NextAttempt {
                                        request_kept: false,
                                    }
                                }
                            };
                            assert_eq!(decide(f, a), want, "{f:?} {a:?}");
                            rows += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(rows, 96);
        // A POST whose connection failed after it was written is never sent twice.
        let post = Allowance {
            reused: true,
            idempotent: false,
            retries: true,
            stale_resends: 0,
        };
        assert_eq!(
            decide(Stale { returned: true }, post),
            NextAttempt {
                request_kept: false
            }
        );
    }
}
