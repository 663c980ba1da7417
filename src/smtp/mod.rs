//! SMTP stage: what a recipient's mail server says about a mailbox (RCPT probes).
//!
//! The stage itself (connections, catch-all detection, retries) comes later. What is here is
//! pure: [`reply`] turns the text of one SMTP reply into a decoding (reason, permanence, the
//! status it implies for the address, and what the sender should do), so the same decoder serves
//! the probe, `prebounce explain`, and tests.

pub mod reply;
