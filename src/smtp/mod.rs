//! SMTP stage: what a recipient's mail server says about a mailbox (RCPT probes).
//!
//! [`plan`] decides, without I/O, which recipients go into which session, retries, canaries and
//! when a domain is done; [`probe`] performs it over sockets, politely, through the
//! [`outbound`] route chosen (direct, a source address, a SOCKS5 proxy). What else is here is
//! pure: [`reply`] turns the text of one SMTP reply into a decoding (reason, permanence, the
//! status it implies for the address, and what the sender should do), so the same decoder serves
//! the probe, `prebounce explain`, and tests. [`session`] is the sans-IO client state machine of
//! one RCPT-only probe session: the caller feeds reply bytes and writes what it returns.
//! [`egress`] judges, from the first servers' connection outcomes, whether this machine can
//! reach port 25 at all (pure; the prober feeds it). [`budget`] is the interface of a
//! politeness budget shared with other processes (the distributed mode's workers).

pub mod budget;
pub mod egress;
pub mod outbound;
pub mod plan;
pub mod probe;
pub mod reply;
pub mod session;
