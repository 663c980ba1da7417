//! A sans-IO client state machine for one SMTP probe session (RCPT-only verification).
//!
//! No sockets and no runtime: the caller [`Session::feed`]s whatever bytes it read, asks
//! [`Session::next_action`] what to do (write bytes, read more, upgrade to TLS, stop), and at
//! the end reads [`Session::results`] and [`Session::end`]. The flow is
//! greeting → EHLO (HELO on a 5xx) → optional STARTTLS and EHLO again → per batch
//! `MAIL FROM` + `RCPT TO`… → `RSET` between batches → `QUIT`.
//!
//! With [`Config::keep_open`] the connection outlives its recipients, as in a sending MTA's
//! connection cache: the last RCPTs go out with an `EHLO` (which resets the transaction, RFC
//! 5321 §4.1.4), and once it is answered the machine says [`Action::Idle`];
//! [`Session::start_job`] then runs a new set of recipients (another domain's, say) on the
//! same connection, and [`Session::close`] ends it. The refusal cap counts over the whole
//! connection.
//!
//! Why EHLO and not RSET: the reply that ends a job must be one no RCPT reply can pass for,
//! or a reply too many (a stray line, a duplicate) shifts every answer of the job by one
//! unnoticed. RSET's "250 Ok" looks like an RCPT's; QUIT's 221 cannot be taken for one, and
//! neither can EHLO's "250 <the server's name>" (no enhanced code; the name it gave before).
//!
//! Safety: the machine can only build the commands of a private `Verb` enum, which has no `DATA`, so a probe
//! can never turn into a delivery. Every argument is checked before it is sent (no CR, LF, NUL or
//! other control character; no non-ASCII unless SMTPUTF8 was negotiated for the transaction), and
//! every command line is checked once more just before it reaches the output.

use std::collections::VecDeque;
use std::fmt;

use super::reply::{Reply, ReplyError};

/// Longest reply line accepted (RFC 5321 allows 512; servers overshoot, but not by this much).
const MAX_LINE: usize = 4096;
/// Longest multi-line reply accepted, so a hostile server cannot make us buffer forever.
const MAX_REPLY: usize = 64 * 1024;

/// When to upgrade the connection with STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// Stay in plain text even when STARTTLS is offered.
    Never,
    /// Upgrade when offered; go on in plain text when not offered or refused.
    #[default]
    Opportunistic,
    /// Upgrade or give up.
    Require,
}

/// What a session does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The EHLO/HELO name (ASCII).
    pub helo: String,
    /// The `MAIL FROM` address (ASCII; may be empty for the null sender `<>`).
    pub mail_from: String,
    pub tls: TlsPolicy,
    /// RCPTs per MAIL transaction; RSET separates transactions.
    pub batch_size: usize,
    /// RCPTs per session; the rest are left [`NotProbedWhy::SessionLimit`] for a new session.
    pub rcpt_per_session: usize,
    /// Stop after this many refused (4xx or 5xx) RCPT replies. Postfix counts both as errors:
    /// after 10 it delays every reply by a second (`smtpd_soft_error_limit`), after 20 it
    /// disconnects (`smtpd_hard_error_limit`) and the replies in flight are lost. Staying
    /// below 10 keeps a session fast and polite.
    pub max_rejections: usize,
    /// Use PIPELINING when the server offers it (off only to measure what it saves).
    pub pipelining: bool,
    /// When the recipients are done, EHLO again and wait for more ([`Action::Idle`]) instead
    /// of QUIT.
    pub keep_open: bool,
}

impl Config {
    pub fn new(helo: impl Into<String>, mail_from: impl Into<String>) -> Config {
        Config {
            helo: helo.into(),
            mail_from: mail_from.into(),
            tls: TlsPolicy::Opportunistic,
            batch_size: 20,
            rcpt_per_session: 100,
            max_rejections: 9,
            pipelining: true,
            keep_open: false,
        }
    }
}

/// Which command argument a [`CommandError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Helo,
    MailFrom,
    Recipient,
    /// A whole command line (the last check before output).
    Command,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Helo => "HELO name",
            Field::MailFrom => "MAIL FROM address",
            Field::Recipient => "recipient",
            Field::Command => "command",
        })
    }
}

/// An argument that may not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the {field} {value:?} contains {found:?}, which is never sent (command injection)")]
    Forbidden {
        field: Field,
        value: String,
        found: char,
    },
    #[error("the {field} {value:?} is not ASCII and SMTPUTF8 was not negotiated")]
    NonAscii { field: Field, value: String },
    #[error("the {field} is empty")]
    Empty { field: Field },
}

/// Why [`Session::feed`] or [`Session::new`] failed. The session is over after a feed error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("the server sent a malformed reply: {0}")]
    Reply(#[from] ReplyError),
    #[error("the server sent a reply line or reply longer than the limit")]
    TooLong,
    #[error("the server sent data the session did not expect: {0}")]
    Unexpected(String),
    /// A reply that cannot answer the command it would be taken for: none was owed, its code
    /// is impossible for that command, or it names another recipient.
    #[error("replies out of step with the commands: {0}")]
    OutOfStep(String),
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the connection.
    Write(Vec<u8>),
    /// Read from the connection and [`Session::feed`] what arrives.
    ReadMore,
    /// Upgrade the connection to TLS, then call [`Session::tls_established`].
    StartTls,
    /// Close the connection; [`Session::results`] and [`Session::end`] are final.
    Finished,
    /// ([`Config::keep_open`] only.) The recipients are done and the connection is between
    /// transactions: [`Session::results`] and [`Session::end`] are final for them. Read
    /// nothing until [`Session::start_job`] or [`Session::close`].
    Idle,
}

/// Why a recipient was not probed in this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotProbedWhy {
    /// `rcpt_per_session` was reached: probe it in a new session.
    SessionLimit,
    /// `max_rejections` was reached: probe it in a new session.
    RejectionCap,
    /// The server said 421 (closing).
    ServerClosing,
    /// The session ended for another reason (see [`Session::end`]).
    SessionEnded,
    /// The session's replies fell out of step with its commands, or the server broke the
    /// protocol: every answer of the session was voided, since any of them may belong to
    /// another command. Ask again in a new session.
    ProtocolError,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The server's reply to `RCPT TO` (decode it with [`super::reply::classify`]).
    Probed(Reply),
    NotProbed(NotProbedWhy),
    /// Non-ASCII address and the server did not advertise SMTPUTF8: never sent.
    Smtputf8Unsupported,
    /// The address may never be sent (control characters …).
    Unsendable(CommandError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptResult {
    pub address: String,
    pub outcome: RcptOutcome,
}

/// How the session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Every recipient of the session was tried (or skipped for its own reason).
    Completed,
    /// The greeting was not 220 (421, 554 …).
    HostRefused(Reply),
    /// Both EHLO and HELO were refused.
    HeloRejected(Reply),
    /// `MAIL FROM` was refused.
    SenderRejected(Reply),
    /// 421: the server is closing the connection.
    ServerClosing(Reply),
    /// The policy is [`TlsPolicy::Require`] and the server does not offer STARTTLS.
    TlsRequiredNotOffered,
    /// The policy is [`TlsPolicy::Require`] and STARTTLS was refused.
    TlsRefused(Reply),
    /// `max_rejections` refused RCPT replies were reached.
    TooManyRejections,
    /// A command would have carried a forbidden argument; it was not sent.
    UnsafeCommand(CommandError),
    ProtocolError(String),
}

/// The only commands the machine can build. There is deliberately no DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Ehlo,
    Helo,
    StartTls,
    Mail,
    Rcpt,
    Rset,
    Quit,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Ehlo => "EHLO",
            Verb::Helo => "HELO",
            Verb::StartTls => "STARTTLS",
            Verb::Mail => "MAIL FROM:",
            Verb::Rcpt => "RCPT TO:",
            Verb::Rset => "RSET",
            Verb::Quit => "QUIT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// STARTTLS accepted; waiting for the caller's upgrade.
    AwaitingTls,
    /// MAIL FROM sent, with the first `sent` RCPTs of `batch` right behind it when the server
    /// pipelines (RFC 2920 lets MAIL and RCPT share a group).
    Mail {
        batch: Vec<usize>,
        sent: usize,
    },
    /// MAIL FROM was refused after RCPTs were pipelined behind it: their replies (503 "need
    /// MAIL" and the like) say nothing about the mailboxes and are skipped.
    Drain {
        remaining: usize,
        end: SessionEnd,
    },
    /// `batch`: recipient indices; `sent` written so far; `answered` replies read.
    Rcpt {
        batch: Vec<usize>,
        sent: usize,
        answered: usize,
    },
    Rset,
    /// The EHLO (or HELO) that ends a job on a kept connection: its reply, which must name
    /// the server as the first one did, is the check that the job's replies were in step.
    Rehello,
    /// The recipients are done and the EHLO was answered: waiting for a new job or a close.
    Idle,
    /// QUIT sent; its 221 is the check that every earlier reply answered the command we
    /// took it for (a reply too many or too few shifts the last RCPT's answer onto QUIT).
    Quit,
    Done,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Caps {
    pipelining: bool,
    starttls: bool,
    smtputf8: bool,
}

/// One probe session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: Config,
    recipients: Vec<String>,
    outcomes: Vec<Option<RcptOutcome>>,
    /// Recipients not yet put in a batch, in input order.
    queue: VecDeque<usize>,
    /// The next transaction's recipients (chosen before RSET).
    next_batch: Vec<usize>,
    state: State,
    caps: Caps,
    tls_active: bool,
    /// SMTPUTF8 was given on this transaction's MAIL FROM.
    utf8_txn: bool,
    rcpt_sent: usize,
    rejections: usize,
    /// The job-ending EHLO went out with the job's last RCPTs (`keep_open`): its reply
    /// follows theirs.
    rehello_in_flight: bool,
    /// HELO, not EHLO, was accepted.
    plain_helo: bool,
    /// The first word of the server's reply to EHLO/HELO (its name), lowercased.
    server_name: Option<String>,
    /// Complete replies read so far: the driver's per-reply deadline restarts on each.
    replies: usize,
    /// Replies owed: commands handed to the caller (on the wire) and not answered yet; the
    /// greeting is owed from the start. A reply when none is owed answers nothing we said.
    owed: usize,
    /// Commands in `out`, not on the wire yet.
    queued: usize,
    /// Recipients answered in the pipelined group still in flight. Their answers count once
    /// the group's last reply is in: a group cut short (421, lost connection) may have lost
    /// a reply, and then every answer after it belongs to the next command.
    unconfirmed: Vec<usize>,
    /// Each recipient as `<address>`, lowercased, to spot a reply naming another one.
    named: Vec<String>,
    inbuf: Vec<u8>,
    lines: Vec<String>,
    out: Vec<u8>,
    end: Option<SessionEnd>,
}

impl Session {
    /// Refuses a HELO name or sender that could never be sent. Unsendable recipients are not an
    /// error: they get [`RcptOutcome::Unsendable`] and the others are probed.
    pub fn new(config: Config, recipients: Vec<String>) -> Result<Session, SessionError> {
        check_arg(Field::Helo, &config.helo, false)?;
        if config.helo.is_empty() {
            return Err(CommandError::Empty { field: Field::Helo }.into());
        }
        check_arg(Field::MailFrom, &config.mail_from, false)?;
        let (outcomes, queue) = checked_recipients(&recipients);
        Ok(Session {
            config,
            named: named(&recipients),
            recipients,
            outcomes,
            queue,
            next_batch: Vec::new(),
            state: State::Greeting,
            caps: Caps::default(),
            tls_active: false,
            utf8_txn: false,
            rcpt_sent: 0,
            rejections: 0,
            rehello_in_flight: false,
            plain_helo: false,
            server_name: None,
            replies: 0,
            owed: 1,
            queued: 0,
            unconfirmed: Vec::new(),
            inbuf: Vec::new(),
            lines: Vec::new(),
            out: Vec::new(),
            end: None,
        })
    }

    /// Takes bytes read from the connection, in chunks of any size.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        if self.state == State::Done {
            return Ok(()); // The 221 to QUIT, or anything after the end: nothing to act on.
        }
        if self.state == State::Idle && !bytes.is_empty() {
            // Owed nothing (an idle-timeout 421, a stray reply): the connection cannot be
            // trusted with another job. The finished job's answers were confirmed by its RSET.
            self.inbuf.clear();
            self.state = State::Done;
            return Err(SessionError::OutOfStep(
                "the server spoke while the connection was idle".into(),
            ));
        }
        self.inbuf.extend_from_slice(bytes);
        let result = if self.state == State::AwaitingTls && !self.inbuf.is_empty() {
            // Until the upgrade nothing may arrive; see `drain` on STARTTLS injection.
            Err(SessionError::Unexpected(
                "data before the TLS upgrade".into(),
            ))
        } else {
            self.drain()
        };
        match result {
            Ok(()) => Ok(()),
            Err(SessionError::Command(c)) => {
                self.out.clear();
                self.queued = 0;
                self.finish(
                    SessionEnd::UnsafeCommand(c.clone()),
                    NotProbedWhy::SessionEnded,
                );
                Err(SessionError::Command(c))
            }
            Err(e) => {
                self.void(e.to_string());
                Err(e)
            }
        }
    }

    /// The connection ended (closed, broken or timed out) before [`Action::Finished`]. The
    /// answers of a pipelined group still in flight are dropped: one of its replies may be
    /// the one that never came, so the others may answer the command before theirs. Answers
    /// of complete groups stand, and so does everything when only QUIT's reply is missing.
    pub fn connection_lost(&mut self) {
        if matches!(self.state, State::Done | State::Quit) {
            return;
        }
        for i in std::mem::take(&mut self.unconfirmed) {
            self.outcomes[i] = None;
        }
    }

    /// A new set of recipients on a connection that is [`Action::Idle`], checked like those
    /// given to [`Session::new`]. The refusals counted so far still count.
    pub fn start_job(&mut self, recipients: Vec<String>) -> Result<(), SessionError> {
        if self.state != State::Idle {
            return Err(SessionError::Unexpected(
                "start_job on a session that is not idle".into(),
            ));
        }
        let (outcomes, queue) = checked_recipients(&recipients);
        self.named = named(&recipients);
        self.recipients = recipients;
        self.outcomes = outcomes;
        self.queue = queue;
        self.unconfirmed.clear();
        self.end = None;
        self.start_first_batch()?;
        Ok(())
    }

    /// Ends an [`Action::Idle`] connection with QUIT (whose 221 still checks the last replies).
    pub fn close(&mut self) {
        if self.state == State::Idle && self.command(Verb::Quit, None).is_ok() {
            self.state = State::Quit;
        } else if self.state != State::Quit {
            self.state = State::Done;
        }
    }

    /// Between jobs ([`Action::Idle`]): the connection may take another.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Refusals (4xx or 5xx RCPT replies) this connection may still take before the cap.
    pub fn refusals_left(&self) -> usize {
        self.config.max_rejections.saturating_sub(self.rejections)
    }

    /// Refused RCPTs over the whole connection.
    pub fn refusals(&self) -> usize {
        self.rejections
    }

    /// The caller upgraded the connection after [`Action::StartTls`]: EHLO again (RFC 3207
    /// says to forget what was learnt before the upgrade).
    pub fn tls_established(&mut self) -> Result<(), SessionError> {
        if self.state != State::AwaitingTls {
            return Err(SessionError::Unexpected(
                "tls_established without a StartTls action".into(),
            ));
        }
        self.tls_active = true;
        self.caps = Caps::default();
        self.state = State::Ehlo;
        let helo = self.config.helo.clone();
        self.command(Verb::Ehlo, Some(&helo))?;
        Ok(())
    }

    pub fn next_action(&mut self) -> Action {
        if !self.out.is_empty() {
            // Handed to the caller: from now on these commands are on the wire.
            self.owed += std::mem::take(&mut self.queued);
            return Action::Write(std::mem::take(&mut self.out));
        }
        match self.state {
            State::AwaitingTls => Action::StartTls,
            State::Idle => Action::Idle,
            State::Done => Action::Finished,
            State::Quit => Action::ReadMore,
            _ => Action::ReadMore,
        }
    }

    /// Complete replies received so far.
    pub fn replies_received(&self) -> usize {
        self.replies
    }

    /// RCPT commands written so far.
    pub fn rcpts_sent(&self) -> usize {
        self.rcpt_sent
    }

    /// Whether the server advertised PIPELINING (after the last EHLO).
    pub fn server_pipelines(&self) -> bool {
        self.caps.pipelining
    }

    /// How the session ended; None while it runs.
    pub fn end(&self) -> Option<&SessionEnd> {
        self.end.as_ref()
    }

    /// One result per recipient, in input order. Final once [`Action::Finished`] was returned;
    /// before that, recipients not yet answered show as [`NotProbedWhy::SessionEnded`].
    pub fn results(&self) -> Vec<RcptResult> {
        self.recipients
            .iter()
            .zip(&self.outcomes)
            .map(|(address, outcome)| RcptResult {
                address: address.clone(),
                outcome: outcome
                    .clone()
                    .unwrap_or(RcptOutcome::NotProbed(NotProbedWhy::SessionEnded)),
            })
            .collect()
    }

    // --------------------------------------------------------------------------------------
    // Reply assembly
    // --------------------------------------------------------------------------------------

    fn drain(&mut self) -> Result<(), SessionError> {
        while let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.inbuf.drain(..=pos).collect();
            if raw.len() > MAX_LINE {
                return Err(SessionError::TooLong);
            }
            let line = String::from_utf8_lossy(&raw).trim().to_string();
            if line.is_empty() {
                continue;
            }
            // A reply when none is owed (it came with the previous one, before the next
            // command was written) answers nothing we said. Taken for the next command's, it
            // would shift every later reply onto the wrong command (a stray "250" after EHLO
            // passing for MAIL's reply, an early "550" after MAIL's for the first RCPT's …).
            if self.owed == 0 {
                return Err(SessionError::OutOfStep(format!(
                    "{line:?} arrived when no reply was owed"
                )));
            }
            let last = !(line.len() >= 4 && line.as_bytes()[3] == b'-');
            self.lines.push(line);
            if self.lines.iter().map(String::len).sum::<usize>() > MAX_REPLY {
                return Err(SessionError::TooLong);
            }
            if last {
                let lines = std::mem::take(&mut self.lines);
                let reply = Reply::parse(&lines.join("\n"))?;
                self.replies += 1;
                self.owed -= 1;
                if let Some(why) = self.out_of_step(&reply) {
                    return Err(SessionError::OutOfStep(why));
                }
                self.on_reply(reply, &lines)?;
                if self.state == State::Done {
                    self.inbuf.clear();
                    return Ok(());
                }
                // Bytes after the 220 to STARTTLS were sent in plain text and would be read as
                // if they came over TLS (the STARTTLS injection attacks, CVE-2011-0411).
                if self.state == State::AwaitingTls && !self.inbuf.is_empty() {
                    return Err(SessionError::Unexpected(
                        "data after the reply to STARTTLS".into(),
                    ));
                }
            }
        }
        if self.inbuf.len() > MAX_LINE {
            return Err(SessionError::TooLong);
        }
        Ok(())
    }

    // --------------------------------------------------------------------------------------
    // The state machine
    // --------------------------------------------------------------------------------------

    fn on_reply(&mut self, reply: Reply, lines: &[String]) -> Result<(), SessionError> {
        let code = reply.code;
        if code == 421 && self.state != State::Greeting {
            // The server is going away: nothing more will be answered, and QUIT is pointless.
            for i in std::mem::take(&mut self.unconfirmed) {
                self.outcomes[i] = None;
            }
            self.finish(
                SessionEnd::ServerClosing(reply),
                NotProbedWhy::ServerClosing,
            );
            return Ok(());
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Greeting if code == 220 => {
                self.state = State::Ehlo;
                let helo = self.config.helo.clone();
                self.command(Verb::Ehlo, Some(&helo))?;
            }
            State::Greeting => {
                self.finish(SessionEnd::HostRefused(reply), NotProbedWhy::SessionEnded)
            }
            State::Ehlo if code / 100 == 2 => {
                self.caps = capabilities(lines);
                self.server_name = first_word(&reply);
                self.after_hello()?;
            }
            State::Ehlo if code / 100 == 5 => {
                self.state = State::Helo;
                let helo = self.config.helo.clone();
                self.command(Verb::Helo, Some(&helo))?;
            }
            State::Helo if code / 100 == 2 => {
                self.caps = Caps::default();
                self.plain_helo = true;
                self.server_name = first_word(&reply);
                self.after_hello()?;
            }
            State::Ehlo | State::Helo => {
                self.quit(SessionEnd::HeloRejected(reply), NotProbedWhy::SessionEnded)?;
            }
            State::StartTls if code == 220 => self.state = State::AwaitingTls,
            State::StartTls if self.config.tls == TlsPolicy::Require => {
                self.quit(SessionEnd::TlsRefused(reply), NotProbedWhy::SessionEnded)?;
            }
            State::StartTls => self.start_first_batch()?,
            State::Mail { batch, sent } if code / 100 == 2 => self.send_rcpts(batch, sent)?,
            State::Mail { sent: 0, .. } => {
                self.quit(
                    SessionEnd::SenderRejected(reply),
                    NotProbedWhy::SessionEnded,
                )?;
            }
            State::Mail { sent, .. } => {
                self.state = State::Drain {
                    remaining: sent + usize::from(self.rehello_in_flight),
                    end: SessionEnd::SenderRejected(reply),
                };
            }
            State::Drain { remaining: 1, end } => self.quit(end, NotProbedWhy::SessionEnded)?,
            State::Drain { remaining, end } => {
                self.state = State::Drain {
                    remaining: remaining - 1,
                    end,
                };
            }
            State::Rcpt {
                batch,
                sent,
                answered,
            } => self.on_rcpt_reply(reply, batch, sent, answered)?,
            State::Rehello => {
                if !self.plain_helo {
                    self.caps = capabilities(lines);
                }
                self.idle();
            }
            State::Rset if code / 100 == 2 => self.send_mail()?,
            State::Rset => self.quit(
                SessionEnd::ProtocolError(format!("RSET refused: {reply}")),
                NotProbedWhy::SessionEnded,
            )?,
            // `out_of_step` let only a 221 through.
            State::Quit => {}
            State::AwaitingTls | State::Idle | State::Done => {
                return Err(SessionError::OutOfStep(format!(
                    "unsolicited reply {reply}"
                )));
            }
        }
        Ok(())
    }

    /// Why `reply` cannot answer the command it would be taken for, if it cannot: its code is
    /// impossible for that command (220 and 221 answer only the greeting, STARTTLS and QUIT;
    /// 3xx only DATA and AUTH, never sent), or it names a recipient of this session other
    /// than the one asked about (MTAs name the address in RCPT refusals; a shifted refusal
    /// names its own).
    fn out_of_step(&self, reply: &Reply) -> Option<String> {
        let code = reply.code;
        // 2xx other than 220/221, 4xx or 5xx.
        let ordinary = code / 100 != 3 && code != 220 && code != 221;
        let (command, fits) = match &self.state {
            State::Greeting => ("the greeting", code == 220 || code >= 400),
            State::StartTls => ("STARTTLS", code == 220 || code >= 400),
            State::Quit => ("QUIT", code == 221),
            State::Ehlo => ("EHLO", ordinary),
            State::Helo => ("HELO", ordinary),
            State::Rset => ("RSET", ordinary),
            State::Rehello => ("EHLO", code / 100 == 2 && self.names_the_server(reply)),
            State::Mail { .. } => ("MAIL FROM", ordinary && self.names_other(reply, None)),
            State::Drain { .. } => ("RCPT", ordinary),
            State::Rcpt {
                batch, answered, ..
            } => (
                "RCPT",
                ordinary && self.names_other(reply, Some(batch[*answered])),
            ),
            State::AwaitingTls | State::Idle | State::Done => ("no command", false),
        };
        (!fits).then(|| format!("{command} was answered with {reply}"))
    }

    /// True unless the reply names, as `<address>`, a recipient of this session other than
    /// `own` without naming `own` (or names any recipient when `own` is None: MAIL's reply).
    /// The sender is not counted: MAIL's reply may name it, and it may be a recipient too.
    fn names_other(&self, reply: &Reply, own: Option<usize>) -> bool {
        if !reply.text.contains('<') {
            return true;
        }
        let text = reply.text.to_lowercase();
        let sender = format!("<{}>", self.config.mail_from.to_lowercase());
        if own.is_some_and(|i| text.contains(&self.named[i])) {
            return true;
        }
        !self.named.iter().enumerate().any(|(j, name)| {
            Some(j) != own
                && own.is_none_or(|i| *name != self.named[i])
                && *name != sender
                && text.contains(name.as_str())
        })
    }

    /// Every answer of the session is void: any of them may belong to another command. The
    /// recipients are left to a new session; QUIT is still sent when the connection can take
    /// it (not between STARTTLS and the handshake), though its answer can rescue nothing.
    fn void(&mut self, why: String) {
        for o in &mut self.outcomes {
            if !matches!(o, Some(RcptOutcome::Unsendable(_))) {
                *o = Some(RcptOutcome::NotProbed(NotProbedWhy::ProtocolError));
            }
        }
        let quit_on_wire = self.state == State::Quit && self.queued == 0;
        let usable = self.state != State::AwaitingTls;
        // Commands not yet written never will be.
        self.out.clear();
        self.queued = 0;
        if usable && !quit_on_wire {
            self.out.extend_from_slice(b"QUIT\r\n");
            self.queued = 1;
        }
        self.unconfirmed.clear();
        self.inbuf.clear();
        self.lines.clear();
        self.state = State::Done;
        self.end = Some(SessionEnd::ProtocolError(why));
    }

    /// After a successful EHLO or HELO: STARTTLS or the first transaction.
    fn after_hello(&mut self) -> Result<(), CommandError> {
        if !self.tls_active && self.config.tls != TlsPolicy::Never {
            if self.caps.starttls {
                self.state = State::StartTls;
                return self.command(Verb::StartTls, None);
            }
            if self.config.tls == TlsPolicy::Require {
                return self.quit(
                    SessionEnd::TlsRequiredNotOffered,
                    NotProbedWhy::SessionEnded,
                );
            }
        }
        self.start_first_batch()
    }

    fn start_first_batch(&mut self) -> Result<(), CommandError> {
        self.next_batch = self.take_batch();
        if self.next_batch.is_empty() {
            if self.config.keep_open {
                // No transaction was opened: nothing to reset.
                self.idle();
                return Ok(());
            }
            return self.quit(SessionEnd::Completed, NotProbedWhy::SessionLimit);
        }
        self.send_mail()
    }

    /// The job is over and the connection is between transactions.
    fn idle(&mut self) {
        self.rehello_in_flight = false;
        self.unconfirmed.clear();
        for o in self.outcomes.iter_mut().filter(|o| o.is_none()) {
            *o = Some(RcptOutcome::NotProbed(NotProbedWhy::SessionLimit));
        }
        self.end.get_or_insert(SessionEnd::Completed);
        self.state = State::Idle;
    }

    /// The next transaction's recipients, marking non-ASCII ones the server cannot take.
    fn take_batch(&mut self) -> Vec<usize> {
        let mut batch = Vec::new();
        while batch.len() < self.config.batch_size
            && self.rcpt_sent + batch.len() < self.config.rcpt_per_session
        {
            let Some(i) = self.queue.pop_front() else {
                break;
            };
            if !self.recipients[i].is_ascii() && !self.caps.smtputf8 {
                self.outcomes[i] = Some(RcptOutcome::Smtputf8Unsupported);
            } else {
                batch.push(i);
            }
        }
        batch
    }

    fn send_mail(&mut self) -> Result<(), CommandError> {
        // RFC 6531: SMTPUTF8 on MAIL FROM is what allows a non-ASCII RCPT in the transaction.
        self.utf8_txn = self.caps.smtputf8
            && self
                .next_batch
                .iter()
                .any(|&i| !self.recipients[i].is_ascii());
        let mut arg = format!("<{}>", self.config.mail_from);
        if self.utf8_txn {
            arg.push_str(" SMTPUTF8");
        }
        self.command(Verb::Mail, Some(&arg))?;
        let batch = std::mem::take(&mut self.next_batch);
        // With PIPELINING the first RCPTs go in the same write: one round trip saved.
        let sent = if self.pipelines() {
            self.send_rcpt_window(&batch, 0)?
        } else {
            0
        };
        self.state = State::Mail { batch, sent };
        Ok(())
    }

    fn pipelines(&self) -> bool {
        self.caps.pipelining && self.config.pipelining
    }

    /// MAIL FROM accepted: the RCPTs, unless they went with it.
    fn send_rcpts(&mut self, batch: Vec<usize>, sent: usize) -> Result<(), CommandError> {
        let n = if sent > 0 {
            sent
        } else {
            self.send_rcpt_window(&batch, 0)?
        };
        self.state = State::Rcpt {
            batch,
            sent: n,
            answered: 0,
        };
        Ok(())
    }

    /// Sends the next RCPTs of `batch` from `from`, all answered before: one, or with
    /// PIPELINING (RFC 2920) as many as fit in one write. Returns how many were sent.
    ///
    /// Fix: pipelined RCPTs used to go all at once, so with a batch larger than
    /// `max_rejections` a server rejecting them all got every one of them (41 rejected RCPTs
    /// in one session with 50 per session), past the cap that keeps us under Postfix's
    /// `smtpd_hard_error_limit`. A window never holds more RCPTs than rejections are left.
    fn send_rcpt_window(&mut self, batch: &[usize], from: usize) -> Result<usize, CommandError> {
        let left = batch.len() - from;
        let n = if self.pipelines() {
            left.min(self.config.max_rejections.saturating_sub(self.rejections))
                .max(1)
        } else {
            1
        };
        for &i in &batch[from..from + n.min(left)] {
            self.send_rcpt(i)?;
        }
        // On a kept connection the job's last RCPTs take the EHLO along (last in the group,
        // as RFC 2920 asks): the next job needs no round trip of its own to reset, and the
        // EHLO's reply checks the job's replies were in step, as QUIT's 221 does.
        let job_ends = from + n >= batch.len()
            && (self.queue.is_empty() || self.rcpt_sent >= self.config.rcpt_per_session);
        if self.config.keep_open && self.pipelines() && job_ends {
            self.rehello()?;
        }
        Ok(n.min(left))
    }

    fn send_rcpt(&mut self, i: usize) -> Result<(), CommandError> {
        let arg = format!("<{}>", self.recipients[i]);
        self.rcpt_sent += 1;
        self.command(Verb::Rcpt, Some(&arg))
    }

    fn on_rcpt_reply(
        &mut self,
        reply: Reply,
        batch: Vec<usize>,
        mut sent: usize,
        mut answered: usize,
    ) -> Result<(), CommandError> {
        if reply.code / 100 != 2 {
            self.rejections += 1;
        }
        self.outcomes[batch[answered]] = Some(RcptOutcome::Probed(reply));
        if self.owed > 0 {
            self.unconfirmed.push(batch[answered]);
        } else {
            self.unconfirmed.clear();
        }
        answered += 1;
        // The cap reached on the job's last reply, with the RSET already behind it: the job
        // ends as usual, and the caller does not reuse a connection with no refusals left.
        let capped = self.rejections >= self.config.max_rejections
            && !(self.rehello_in_flight && answered == batch.len());
        if answered < sent {
            // Pipelined replies still to come.
            self.state = State::Rcpt {
                batch,
                sent,
                answered,
            };
            return Ok(());
        }
        if capped {
            for &i in &batch[answered..] {
                self.outcomes[i] = Some(RcptOutcome::NotProbed(NotProbedWhy::RejectionCap));
            }
            return self.quit(SessionEnd::TooManyRejections, NotProbedWhy::RejectionCap);
        }
        if answered < batch.len() {
            sent += self.send_rcpt_window(&batch, answered)?;
            self.state = State::Rcpt {
                batch,
                sent,
                answered,
            };
            return Ok(());
        }
        // Batch done. RSET only when another transaction follows or the connection is kept;
        // QUIT ends one anyway.
        self.next_batch = self.take_batch();
        if self.next_batch.is_empty() {
            if !self.config.keep_open {
                return self.quit(SessionEnd::Completed, NotProbedWhy::SessionLimit);
            }
            if !self.rehello_in_flight {
                self.rehello()?;
            }
            self.state = State::Rehello;
            return Ok(());
        }
        self.state = State::Rset;
        self.command(Verb::Rset, None)
    }

    /// The job-ending EHLO (HELO when that is what the server took).
    fn rehello(&mut self) -> Result<(), CommandError> {
        let helo = self.config.helo.clone();
        let verb = if self.plain_helo {
            Verb::Helo
        } else {
            Verb::Ehlo
        };
        self.command(verb, Some(&helo))?;
        self.rehello_in_flight = true;
        Ok(())
    }

    /// Whether a reply to the job-ending EHLO is one: no enhanced code, and the server's name
    /// first, as in its first reply to EHLO.
    fn names_the_server(&self, reply: &Reply) -> bool {
        reply.enhanced.is_none()
            && self
                .server_name
                .as_ref()
                .is_none_or(|name| first_word(reply).as_ref() == Some(name))
    }

    fn quit(&mut self, end: SessionEnd, rest: NotProbedWhy) -> Result<(), CommandError> {
        self.rehello_in_flight = false;
        self.command(Verb::Quit, None)?;
        self.finish(end, rest);
        self.state = State::Quit;
        Ok(())
    }

    fn finish(&mut self, end: SessionEnd, rest: NotProbedWhy) {
        for o in self.outcomes.iter_mut().filter(|o| o.is_none()) {
            *o = Some(RcptOutcome::NotProbed(rest));
        }
        self.state = State::Done;
        self.end.get_or_insert(end);
    }

    /// Appends one command line to the output, after a last check of the whole line.
    fn command(&mut self, verb: Verb, arg: Option<&str>) -> Result<(), CommandError> {
        let mut line = verb.as_str().to_string();
        if let Some(arg) = arg {
            if !matches!(verb, Verb::Mail | Verb::Rcpt) {
                line.push(' ');
            }
            line.push_str(arg);
        }
        let utf8 = self.utf8_txn && matches!(verb, Verb::Mail | Verb::Rcpt);
        check_arg(Field::Command, &line, utf8)?;
        self.queued += 1;
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// The first word of a reply's text, lowercased (the server's name in a reply to EHLO).
fn first_word(reply: &Reply) -> Option<String> {
    reply
        .text
        .split_whitespace()
        .next()
        .map(str::to_ascii_lowercase)
}

/// Unsendable recipients get their outcome at once; the others queue, in order.
fn checked_recipients(recipients: &[String]) -> (Vec<Option<RcptOutcome>>, VecDeque<usize>) {
    let mut outcomes = Vec::with_capacity(recipients.len());
    let mut queue = VecDeque::new();
    for (i, r) in recipients.iter().enumerate() {
        // Non-ASCII is decided per server (SMTPUTF8), control characters never pass.
        match check_arg(Field::Recipient, r, true) {
            Err(e) => outcomes.push(Some(RcptOutcome::Unsendable(e))),
            Ok(()) if r.is_empty() => {
                outcomes.push(Some(RcptOutcome::Unsendable(CommandError::Empty {
                    field: Field::Recipient,
                })))
            }
            Ok(()) => {
                outcomes.push(None);
                queue.push_back(i);
            }
        }
    }
    (outcomes, queue)
}

/// Each recipient as `<address>`, lowercased, as refusals name them.
fn named(recipients: &[String]) -> Vec<String> {
    recipients
        .iter()
        .map(|r| format!("<{}>", r.to_lowercase()))
        .collect()
}

/// No control characters (CR, LF and NUL above all: they would end or split the command),
/// and non-ASCII only when allowed. Addresses also may not hold `<` or `>`, which would close
/// the path early and let the rest pass as ESMTP parameters.
fn check_arg(field: Field, value: &str, utf8: bool) -> Result<(), CommandError> {
    for c in value.chars() {
        let bracket = matches!(field, Field::MailFrom | Field::Recipient) && matches!(c, '<' | '>');
        // NEL and LINE SEPARATOR: some software treats them as line ends.
        if c.is_ascii_control() || bracket || c == '\u{85}' || c == '\u{2028}' {
            return Err(CommandError::Forbidden {
                field,
                value: value.to_string(),
                found: c,
            });
        }
        if !c.is_ascii() && !utf8 {
            return Err(CommandError::NonAscii {
                field,
                value: value.to_string(),
            });
        }
    }
    Ok(())
}

/// EHLO keywords, one per line after the first (RFC 5321 §4.1.1.1), case-insensitive.
fn capabilities(lines: &[String]) -> Caps {
    let mut caps = Caps::default();
    for line in lines.iter().skip(1) {
        let keyword = line.get(4..).unwrap_or("").split_whitespace().next();
        match keyword.map(str::to_ascii_uppercase).as_deref() {
            Some("PIPELINING") => caps.pipelining = true,
            Some("STARTTLS") => caps.starttls = true,
            Some("SMTPUTF8") => caps.smtputf8 = true,
            _ => {}
        }
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            tls: TlsPolicy::Never,
            ..Config::new("probe.example", "check@probe.example")
        }
    }

    fn session(config: Config, rcpts: &[&str]) -> Session {
        Session::new(config, rcpts.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    /// Feeds `input`, then collects the writes until the machine wants something else.
    /// Every write of every transcript is checked: no DATA, no stray CR/LF/NUL in a line.
    /// A session past its greeting (`220 mx`) and `ehlo`, EHLO's reply.
    fn greeted(config: Config, rcpts: &[&str], ehlo: &str) -> Session {
        let mut s = session(config, rcpts);
        step(&mut s, "220 mx\r\n");
        step(&mut s, ehlo);
        s
    }

    fn step(s: &mut Session, input: &str) -> (Vec<String>, Action) {
        s.feed(input.as_bytes()).unwrap();
        drain(s)
    }

    fn drain(s: &mut Session) -> (Vec<String>, Action) {
        let mut writes = Vec::new();
        loop {
            match s.next_action() {
                Action::Write(bytes) => {
                    let text = String::from_utf8(bytes).unwrap();
                    assert!(text.ends_with("\r\n"), "{text:?}");
                    for line in text.split_terminator("\r\n") {
                        assert!(!line.to_ascii_uppercase().starts_with("DATA"), "{line}");
                        assert!(!line.contains(['\r', '\n', '\0']), "{line:?}");
                    }
                    writes.push(text);
                }
                // The server's 221 to QUIT, so that tests read the session's end.
                Action::ReadMore if s.state == State::Quit => s.feed(b"221 2.0.0 Bye\r\n").unwrap(),
                other => return (writes, other),
            }
        }
    }

    fn outcome(s: &Session, i: usize) -> RcptOutcome {
        s.results()[i].outcome.clone()
    }

    fn code(s: &Session, i: usize) -> u16 {
        match outcome(s, i) {
            RcptOutcome::Probed(r) => r.code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_mail_from_makes_the_pipelined_rcpt_replies_meaningless() {
        let mut s = greeted(
            cfg(),
            &["a@x.example", "b@x.example"],
            "250-mx\r\n250 PIPELINING\r\n",
        );
        // The sender is refused; the RCPTs that went with it get "need MAIL" (or even a
        // 550): none of it is about the mailboxes.
        let (w, a) = step(
            &mut s,
            "553 5.7.1 <check@probe.example>: Sender rejected\r\n",
        );
        assert_eq!((w.len(), a), (0, Action::ReadMore));
        let (w, a) = step(&mut s, "503 5.5.1 Error: need MAIL command\r\n");
        assert_eq!((w.len(), a), (0, Action::ReadMore));
        let (w, a) = step(&mut s, "550 5.1.1 no such user\r\n");
        assert_eq!((w, a), (vec!["QUIT\r\n".into()], Action::Finished));
        assert!(matches!(s.end(), Some(SessionEnd::SenderRejected(r)) if r.code == 553));
        for i in [0, 1] {
            assert_eq!(
                outcome(&s, i),
                RcptOutcome::NotProbed(NotProbedWhy::SessionEnded)
            );
        }
    }

    fn kept() -> Config {
        Config {
            keep_open: true,
            ..cfg()
        }
    }

    #[test]
    fn a_kept_connection_serves_a_second_domain_in_its_own_transaction() {
        let mut s = greeted(
            kept(),
            &["a@x.example", "b@x.example"],
            "250-mx.y.example\r\n250 PIPELINING\r\n",
        );
        // EHLO goes last in the group with the job's RCPTs, in place of RSET and QUIT.
        let (w, _) = drain(&mut s);
        assert!(w.is_empty());
        let (w, a) = step(&mut s, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
        assert_eq!((w.len(), a), (0, Action::ReadMore));
        let (w, a) = step(
            &mut s,
            "550 5.1.1 <b@x.example>: User unknown\r\n250-mx.y.example\r\n250 PIPELINING\r\n",
        );
        assert_eq!((w.len(), a), (0, Action::Idle));
        assert_eq!(s.end(), Some(&SessionEnd::Completed));
        assert_eq!((code(&s, 0), code(&s, 1)), (250, 550));
        assert_eq!((s.refusals(), s.refusals_left()), (1, 8));
        // The next domain: MAIL FROM and its RCPT in one write, no RSET needed.
        s.start_job(vec!["c@z.example".into()]).unwrap();
        let (w, a) = drain(&mut s);
        assert_eq!(
            w,
            vec![
                "MAIL FROM:<check@probe.example>\r\nRCPT TO:<c@z.example>\r\nEHLO probe.example\r\n"
                    .to_string()
            ]
        );
        assert_eq!(a, Action::ReadMore);
        let (_, a) = step(
            &mut s,
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250-mx.y.example\r\n250 PIPELINING\r\n",
        );
        assert_eq!(a, Action::Idle);
        assert_eq!(s.results().len(), 1);
        assert_eq!(code(&s, 0), 250);
        s.close();
        let (w, a) = drain(&mut s);
        assert_eq!((w, a), (vec!["QUIT\r\n".to_string()], Action::Finished));
    }

    #[test]
    fn a_reply_too_many_is_caught_by_the_job_ending_ehlo() {
        // A stray "550" before a@'s reply shifts every answer by one: a@ would be refused
        // and b@ take a@'s "250". The EHLO is then answered with b@'s "250 2.1.5 Ok", which
        // does not name the server: every answer of the job is void.
        let mut s = greeted(
            Config {
                max_rejections: 2,
                ..kept()
            },
            &["a@x.example", "b@x.example"],
            "250-mx.y.example\r\n250 PIPELINING\r\n",
        );
        let stray =
            "250 2.1.0 Ok\r\n550 5.1.1 Mailbox unavailable\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n";
        assert!(s.feed(stray.as_bytes()).is_err());
        let (w, a) = drain(&mut s);
        assert_eq!((w, a), (vec!["QUIT\r\n".to_string()], Action::Finished));
        assert!(matches!(s.end(), Some(SessionEnd::ProtocolError(_))));
        for i in [0, 1] {
            assert_eq!(
                outcome(&s, i),
                RcptOutcome::NotProbed(NotProbedWhy::ProtocolError)
            );
        }
    }

    #[test]
    fn a_kept_connection_that_speaks_while_idle_is_not_reused() {
        let mut s = greeted(
            kept(),
            &["a@x.example"],
            "250-mx.y.example\r\n250 PIPELINING\r\n",
        );
        step(
            &mut s,
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 mx.y.example\r\n",
        );
        assert!(s.is_idle());
        assert!(
            s.feed(b"421 4.4.2 mx.y.example Error: timeout exceeded\r\n")
                .is_err()
        );
        // The finished job's answer stands; no new job starts on this connection.
        assert_eq!(code(&s, 0), 250);
        assert!(s.start_job(vec!["b@x.example".into()]).is_err());
    }

    #[test]
    fn replies_out_of_step_are_caught_by_the_reply_to_quit() {
        let mut s = session(cfg(), &["a@x.example"]);
        s.feed(b"220 mx\r\n").unwrap();
        drain(&mut s);
        s.feed(b"250 mx\r\n").unwrap(); // EHLO done: MAIL FROM goes out
        drain(&mut s);
        // A stray line (a broken multi-line EHLO reply, in its own segment) is taken for
        // MAIL's answer; MAIL's own answer then passes for the RCPT's …
        s.feed(b"250 SIZE 1000\r\n").unwrap();
        drain(&mut s);
        s.feed(b"250 2.1.0 Ok\r\n").unwrap();
        assert_eq!(s.next_action(), Action::Write(b"QUIT\r\n".to_vec()));
        // … and the RCPT's real answer arrives where the 221 should.
        assert!(
            s.feed(b"550 5.1.1 <a@x.example>: User unknown\r\n")
                .is_err()
        );
        assert_eq!(s.next_action(), Action::Finished, "QUIT is not sent twice");
        assert!(
            matches!(s.end(), Some(SessionEnd::ProtocolError(e)) if e.contains("out of step")),
            "{:?}",
            s.end()
        );
        assert_eq!(
            outcome(&s, 0),
            RcptOutcome::NotProbed(NotProbedWhy::ProtocolError),
            "no answer of an out-of-step session is kept"
        );
    }

    #[test]
    fn plain_session_without_pipelining() {
        let mut s = session(cfg(), &["a@x.example", "b@x.example"]);
        assert_eq!(s.next_action(), Action::ReadMore);
        let (w, a) = step(&mut s, "220 mx.x.example ESMTP\r\n");
        assert_eq!(
            (w, a),
            (vec!["EHLO probe.example\r\n".into()], Action::ReadMore)
        );
        let (w, _) = step(
            &mut s,
            "250-mx.x.example\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
        );
        assert_eq!(w, ["MAIL FROM:<check@probe.example>\r\n"]);
        let (w, _) = step(&mut s, "250 2.1.0 Ok\r\n");
        assert_eq!(w, ["RCPT TO:<a@x.example>\r\n"]);
        let (w, _) = step(&mut s, "250 2.1.5 Ok\r\n");
        assert_eq!(w, ["RCPT TO:<b@x.example>\r\n"]);
        let (w, a) = step(&mut s, "550 5.1.1 <b@x.example>: User unknown\r\n");
        assert_eq!((w, a), (vec!["QUIT\r\n".into()], Action::Finished));
        assert_eq!(s.end(), Some(&SessionEnd::Completed));
        assert_eq!((code(&s, 0), code(&s, 1)), (250, 550));
        // The 221 after QUIT is accepted and ignored.
        assert_eq!(step(&mut s, "221 Bye\r\n"), (vec![], Action::Finished));
    }

    #[test]
    fn pipelining_sends_rcpts_in_one_write_and_matches_replies_in_order() {
        let mut s = session(cfg(), &["a@x.example", "b@x.example", "c@x.example"]);
        step(&mut s, "220 mx\r\n");
        // MAIL FROM and the RCPTs share one write (RFC 2920).
        let (w, _) = step(&mut s, "250-mx\r\n250-pipelining\r\n250 SIZE\r\n");
        assert_eq!(
            w,
            [
                "MAIL FROM:<check@probe.example>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\n"
            ]
        );
        let (w, a) = step(&mut s, "250 ok\r\n");
        assert_eq!((w.len(), a), (0, Action::ReadMore));
        let (w, a) = step(&mut s, "550 5.1.1 no\r\n250 ok\r\n");
        assert_eq!((w.len(), a), (0, Action::ReadMore));
        let (w, a) = step(&mut s, "450-4.2.1 later\r\n450 4.2.1 really\r\n");
        assert_eq!((w, a), (vec!["QUIT\r\n".into()], Action::Finished));
        assert_eq!((code(&s, 0), code(&s, 1), code(&s, 2)), (550, 250, 450));
    }

    #[test]
    fn multi_line_greeting_waits_for_the_final_220() {
        let mut s = session(cfg(), &["a@x.example"]);
        for line in ["220-mx.x.example ESMTP\r\n", "220-no UCE\r\n", "220-\r\n"] {
            assert_eq!(step(&mut s, line), (vec![], Action::ReadMore));
        }
        let (w, _) = step(&mut s, "220 ready\r\n");
        assert_eq!(w, ["EHLO probe.example\r\n"]);
    }

    #[test]
    fn refused_banners_end_the_session() {
        for banner in ["554 5.7.1 no service\r\n", "421 4.3.2 busy\r\n"] {
            let mut s = session(cfg(), &["a@x.example"]);
            assert_eq!(step(&mut s, banner), (vec![], Action::Finished));
            assert!(
                matches!(s.end(), Some(SessionEnd::HostRefused(_))),
                "{banner}"
            );
            assert_eq!(
                outcome(&s, 0),
                RcptOutcome::NotProbed(NotProbedWhy::SessionEnded)
            );
        }
    }

    #[test]
    fn ehlo_5xx_falls_back_to_helo() {
        let mut s = session(cfg(), &["a@x.example"]);
        step(&mut s, "220 mx\r\n");
        let (w, _) = step(&mut s, "502 5.5.2 command not recognized\r\n");
        assert_eq!(w, ["HELO probe.example\r\n"]);
        let (w, _) = step(&mut s, "250 mx\r\n");
        assert_eq!(w, ["MAIL FROM:<check@probe.example>\r\n"]);
        // HELO refused too: give up.
        let mut s = session(cfg(), &["a@x.example"]);
        step(&mut s, "220 mx\r\n");
        step(&mut s, "500 no\r\n");
        let (w, a) = step(&mut s, "501 no\r\n");
        assert_eq!((w, a), (vec!["QUIT\r\n".into()], Action::Finished));
        assert!(matches!(s.end(), Some(SessionEnd::HeloRejected(_))));
    }

    #[test]
    fn starttls_opportunistic_upgrades_then_ehlo_again() {
        let config = Config {
            tls: TlsPolicy::Opportunistic,
            ..cfg()
        };
        let mut s = session(config, &["a@x.example"]);
        step(&mut s, "220 mx\r\n");
        let (w, _) = step(&mut s, "250-mx\r\n250-StartTLS\r\n250 PIPELINING\r\n");
        assert_eq!(w, ["STARTTLS\r\n"]);
        assert_eq!(
            step(&mut s, "220 2.0.0 go ahead\r\n"),
            (vec![], Action::StartTls)
        );
        assert_eq!(s.next_action(), Action::StartTls);
        s.tls_established().unwrap();
        let (w, _) = drain(&mut s);
        assert_eq!(w, ["EHLO probe.example\r\n"]);
        // STARTTLS offered again over TLS: not repeated.
        let (w, _) = step(&mut s, "250-mx\r\n250 STARTTLS\r\n");
        assert_eq!(w, ["MAIL FROM:<check@probe.example>\r\n"]);
    }

    #[test]
    fn starttls_never_policy_and_refusal() {
        let mut s = session(cfg(), &["a@x.example"]);
        step(&mut s, "220 mx\r\n");
        let (w, _) = step(&mut s, "250-mx\r\n250 STARTTLS\r\n");
        assert_eq!(w, ["MAIL FROM:<check@probe.example>\r\n"]);
        // Opportunistic and refused: go on in plain text.
        let config = Config {
            tls: TlsPolicy::Opportunistic,
            ..cfg()
        };
        let mut s = greeted(config, &["a@x.example"], "250-mx\r\n250 STARTTLS\r\n");
        let (w, _) = step(&mut s, "454 4.7.0 TLS not available\r\n");
        assert_eq!(w, ["MAIL FROM:<check@probe.example>\r\n"]);
    }

    #[test]
    fn starttls_required_but_not_offered() {
        let config = Config {
            tls: TlsPolicy::Require,
            ..cfg()
        };
        let mut s = session(config, &["a@x.example"]);
        step(&mut s, "220 mx\r\n");
        let (w, a) = step(&mut s, "250-mx\r\n250 PIPELINING\r\n");
        assert_eq!((w, a), (vec!["QUIT\r\n".into()], Action::Finished));
        assert_eq!(s.end(), Some(&SessionEnd::TlsRequiredNotOffered));
        assert_eq!(
            outcome(&s, 0),
            RcptOutcome::NotProbed(NotProbedWhy::SessionEnded)
        );
    }

    #[test]
    fn plaintext_after_starttls_reply_is_refused() {
        let config = Config {
            tls: TlsPolicy::Require,
            ..cfg()
        };
        let mut s = greeted(config, &["a@x.example"], "250-mx\r\n250 STARTTLS\r\n");
        assert!(s.feed(b"220 go ahead\r\n250-injected\r\n").is_err());
        assert_eq!(s.next_action(), Action::Finished);
        assert!(matches!(s.end(), Some(SessionEnd::ProtocolError(_))));
        // The same bytes in a later read are refused too.
        let config = Config {
            tls: TlsPolicy::Require,
            ..cfg()
        };
        let mut s = greeted(config, &["a@x.example"], "250-mx\r\n250 STARTTLS\r\n");
        assert_eq!(step(&mut s, "220 go ahead\r\n"), (vec![], Action::StartTls));
        assert!(s.feed(b"250").is_err());
        assert_eq!(s.next_action(), Action::Finished);
        assert!(matches!(s.end(), Some(SessionEnd::ProtocolError(_))));
    }

    #[test]
    fn server_closing_421_mid_batch() {
        // Without pipelining each answer is complete before the next RCPT: a's stands.
        let mut s = greeted(
            cfg(),
            &["a@x.example", "b@x.example", "c@x.example"],
            "250 mx\r\n",
        );
        step(&mut s, "250 ok\r\n");
        step(&mut s, "250 ok\r\n");
        let (w, a) = step(&mut s, "421 4.7.0 too many errors\r\n");
        assert_eq!((w, a), (vec![], Action::Finished));
        let Some(SessionEnd::ServerClosing(r)) = s.end() else {
            panic!("{:?}", s.end())
        };
        assert_eq!(r.code, 421);
        assert_eq!(code(&s, 0), 250);
        for i in [1, 2] {
            assert_eq!(
                outcome(&s, i),
                RcptOutcome::NotProbed(NotProbedWhy::ServerClosing)
            );
        }
        // Pipelined, the group is cut short: had a reply of it been lost, a's "answer" would
        // be MAIL's, so it is asked again with the rest.
        let mut s = greeted(
            cfg(),
            &["a@x.example", "b@x.example", "c@x.example"],
            "250-mx\r\n250 PIPELINING\r\n",
        );
        step(&mut s, "250 ok\r\n");
        let (w, a) = step(&mut s, "250 ok\r\n421 4.7.0 too many errors\r\n");
        assert_eq!((w, a), (vec![], Action::Finished));
        assert!(matches!(s.end(), Some(SessionEnd::ServerClosing(_))));
        for i in [0, 1, 2] {
            assert_eq!(
                outcome(&s, i),
                RcptOutcome::NotProbed(NotProbedWhy::ServerClosing)
            );
        }
    }

    #[test]
    fn rejection_cap_stops_and_leaves_the_rest() {
        let config = Config {
            max_rejections: 2,
            ..cfg()
        };
        let rcpts = ["a@x.example", "b@x.example", "c@x.example", "d@x.example"];
        let mut s = greeted(config.clone(), &rcpts, "250 mx\r\n");
        step(&mut s, "250 ok\r\n");
        step(&mut s, "550 no\r\n");
        let (w, a) = step(&mut s, "550 no\r\n");
        assert_eq!((w, a), (vec!["QUIT\r\n".into()], Action::Finished));
        assert_eq!(s.end(), Some(&SessionEnd::TooManyRejections));
        for i in [2, 3] {
            assert_eq!(
                outcome(&s, i),
                RcptOutcome::NotProbed(NotProbedWhy::RejectionCap)
            );
        }
        // The default cap stays below Postfix's soft error limit (10).
        assert_eq!(Config::new("h", "f").max_rejections, 9);
    }

    #[test]
    fn pipelined_rcpts_never_outnumber_the_rejections_left() {
        let config = Config {
            max_rejections: 2,
            ..cfg()
        };
        let rcpts = ["a@x.example", "b@x.example", "c@x.example", "d@x.example"];
        let mut s = session(config, &rcpts);
        step(&mut s, "220 mx\r\n");
        let (w, _) = step(&mut s, "250-mx\r\n250 PIPELINING\r\n");
        assert_eq!(
            w,
            [
                "MAIL FROM:<check@probe.example>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\n"
            ]
        );
        let (w, _) = step(&mut s, "250 ok\r\n550 no\r\n250 ok\r\n");
        assert_eq!(w, ["RCPT TO:<c@x.example>\r\n"], "one rejection left");
        let (w, a) = step(&mut s, "550 no\r\n");
        assert_eq!((w, a), (vec!["QUIT\r\n".into()], Action::Finished));
        assert_eq!(s.end(), Some(&SessionEnd::TooManyRejections));
        assert_eq!(
            outcome(&s, 3),
            RcptOutcome::NotProbed(NotProbedWhy::RejectionCap)
        );
    }

    /// The commands not yet written are dropped and QUIT goes instead; then nothing more.
    fn quits_and_finishes(s: &mut Session) {
        assert_eq!(s.next_action(), Action::Write(b"QUIT\r\n".to_vec()));
        assert_eq!(s.next_action(), Action::Finished);
    }

    #[test]
    fn a_reply_before_its_command_was_sent_is_refused() {
        let mut s = session(cfg(), &["a@x.example"]);
        assert!(s.feed(b"220 mx\r\n250 mx\r\n").is_err());
        assert!(matches!(s.end(), Some(SessionEnd::ProtocolError(e)) if e.contains("out of step")));
        quits_and_finishes(&mut s);
        let mut s = session(cfg(), &["a@x.example"]);
        step(&mut s, "220 mx\r\n");
        // A stray "250" after the EHLO reply would pass for the reply to MAIL FROM.
        assert!(s.feed(b"250 mx\r\n250 ok\r\n").is_err());
        quits_and_finishes(&mut s);
        assert_eq!(
            outcome(&s, 0),
            RcptOutcome::NotProbed(NotProbedWhy::ProtocolError)
        );
    }

    #[test]
    fn batches_are_separated_by_rset_and_session_limit_holds() {
        let config = Config {
            batch_size: 2,
            rcpt_per_session: 3,
            ..cfg()
        };
        let rcpts = ["a@x.example", "b@x.example", "c@x.example", "d@x.example"];
        let mut s = greeted(config, &rcpts, "250-mx\r\n250 PIPELINING\r\n");
        let (w, _) = step(&mut s, "250 ok\r\n250 ok\r\n250 ok\r\n");
        assert_eq!(w, ["RSET\r\n"]);
        let (w, _) = step(&mut s, "250 ok\r\n");
        assert_eq!(
            w,
            ["MAIL FROM:<check@probe.example>\r\nRCPT TO:<c@x.example>\r\n"]
        );
        let (w, _) = step(&mut s, "250 ok\r\n");
        assert!(w.is_empty());
        let (w, a) = step(&mut s, "250 ok\r\n");
        assert_eq!((w, a), (vec!["QUIT\r\n".into()], Action::Finished));
        assert_eq!(s.end(), Some(&SessionEnd::Completed));
        assert_eq!(
            outcome(&s, 3),
            RcptOutcome::NotProbed(NotProbedWhy::SessionLimit)
        );
    }

    #[test]
    fn smtputf8_negotiated() {
        let mut s = session(cfg(), &["a@x.example", "jürgen@x.example"]);
        step(&mut s, "220 mx\r\n");
        let (w, _) = step(&mut s, "250-mx\r\n250 smtputf8\r\n");
        assert_eq!(w, ["MAIL FROM:<check@probe.example> SMTPUTF8\r\n"]);
        step(&mut s, "250 ok\r\n");
        let (w, _) = step(&mut s, "250 ok\r\n");
        assert_eq!(w, ["RCPT TO:<jürgen@x.example>\r\n"]);
        step(&mut s, "250 ok\r\n");
        assert_eq!(code(&s, 1), 250);
        // An all-ASCII batch does not ask for SMTPUTF8 even when offered.
        let mut s = session(cfg(), &["a@x.example"]);
        step(&mut s, "220 mx\r\n");
        let (w, _) = step(&mut s, "250-mx\r\n250 SMTPUTF8\r\n");
        assert_eq!(w, ["MAIL FROM:<check@probe.example>\r\n"]);
    }

    #[test]
    fn smtputf8_unsupported_is_not_sent() {
        let mut s = session(cfg(), &["jürgen@x.example", "a@x.example"]);
        step(&mut s, "220 mx\r\n");
        let (w, _) = step(&mut s, "250 mx\r\n");
        assert_eq!(w, ["MAIL FROM:<check@probe.example>\r\n"]);
        let (w, _) = step(&mut s, "250 ok\r\n");
        assert_eq!(w, ["RCPT TO:<a@x.example>\r\n"]);
        step(&mut s, "250 ok\r\n");
        assert_eq!(outcome(&s, 0), RcptOutcome::Smtputf8Unsupported);
        assert_eq!(code(&s, 1), 250);
    }

    /// A whole pipelined session, fed one byte at a time, gives the same writes and results.
    #[test]
    fn replies_split_at_every_byte() {
        let replies = [
            "220-mx\r\n220 ready\r\n",
            "250-mx\n250-PIPELINING\r\n250 SMTPUTF8\r\n",
            "250 2.1.0 ok\r\n",
            "250 2.1.5 ok\r\n550-5.1.1 no such\r\n550 5.1.1 user\r\n",
            "221 bye\r\n",
        ];
        let run = |bytewise: bool| {
            let mut s = session(cfg(), &["a@x.example", "b@x.example"]);
            let mut writes = Vec::new();
            for r in replies {
                if bytewise {
                    for b in r.as_bytes() {
                        s.feed(std::slice::from_ref(b)).unwrap();
                        writes.extend(drain(&mut s).0);
                    }
                } else {
                    writes.extend(step(&mut s, r).0);
                }
            }
            (writes, s.results(), s.end().cloned())
        };
        let whole = run(false);
        assert_eq!(whole, run(true));
        assert_eq!(whole.0.len(), 3, "EHLO; MAIL with the RCPTs; QUIT");
        assert_eq!(whole.2, Some(SessionEnd::Completed));
        let RcptOutcome::Probed(r) = &whole.1[1].outcome else {
            panic!()
        };
        assert_eq!(r.text, "no such user");
    }

    #[test]
    fn injection_in_an_address_is_refused_and_never_written() {
        let bad = [
            "a@x.example>\r\nDATA",
            "a@x.example\nRSET",
            "a\0@x.example",
            "a@x.example\rX",
            "a@x.example> NOTIFY=NEVER",
        ];
        let mut rcpts = bad.to_vec();
        rcpts.push("ok@x.example");
        let mut s = session(cfg(), &rcpts);
        let mut all = Vec::new();
        for r in [
            "220 mx\r\n",
            "250-mx\r\n250 PIPELINING\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
        ] {
            all.extend(step(&mut s, r).0);
        }
        assert_eq!(
            all[1], "MAIL FROM:<check@probe.example>\r\nRCPT TO:<ok@x.example>\r\n",
            "only the clean address is sent"
        );
        let joined = all.concat();
        assert!(!joined.contains("DATA") && !joined.contains('\0') && !joined.contains("NOTIFY"));
        for (i, address) in bad.iter().enumerate() {
            assert!(
                matches!(
                    outcome(&s, i),
                    RcptOutcome::Unsendable(CommandError::Forbidden { .. })
                ),
                "{address:?}"
            );
        }
    }

    #[test]
    fn injection_in_helo_or_from_is_a_typed_error() {
        for helo in ["probe\r\nDATA", "probe\n", "pro\0be", "probé", ""] {
            let config = Config::new(helo, "check@probe.example");
            assert!(
                Session::new(config, vec!["a@x.example".into()]).is_err(),
                "{helo:?}"
            );
        }
        for from in ["c@p.example>\r\nDATA", "c@p.example\r", "c\0@p", "c@p> X"] {
            let config = Config::new("probe.example", from);
            let err = Session::new(config, vec![]).unwrap_err();
            assert!(
                matches!(
                    err,
                    SessionError::Command(CommandError::Forbidden {
                        field: Field::MailFrom,
                        ..
                    })
                ),
                "{from:?}: {err}"
            );
        }
        // The null sender is allowed.
        let mut s = session(Config::new("probe.example", ""), &["a@x.example"]);
        step(&mut s, "220 mx\r\n");
        let (w, _) = step(&mut s, "250 mx\r\n");
        assert_eq!(w, ["MAIL FROM:<>\r\n"]);
    }

    #[test]
    fn malformed_and_oversized_replies_end_the_session() {
        let mut s = session(cfg(), &["a@x.example"]);
        assert!(matches!(
            s.feed(b"hello there\r\n"),
            Err(SessionError::Reply(_))
        ));
        quits_and_finishes(&mut s);
        let mut s = session(cfg(), &["a@x.example"]);
        assert_eq!(
            s.feed(&vec![b'2'; MAX_LINE + 1]),
            Err(SessionError::TooLong)
        );
        assert!(matches!(s.end(), Some(SessionEnd::ProtocolError(_))));
    }

    // ----------------------------------------------------------------------------------
    // Issue #14: replies out of step with the commands
    // ----------------------------------------------------------------------------------

    fn voided(s: &Session) -> bool {
        matches!(s.end(), Some(SessionEnd::ProtocolError(e)) if e.contains("out of step"))
            && s.results().iter().all(|r| {
                matches!(
                    r.outcome,
                    RcptOutcome::NotProbed(NotProbedWhy::ProtocolError)
                )
            })
    }

    /// The issue's first server: a `550 5.1.1` right behind MAIL's `250`, before any RCPT.
    #[test]
    fn an_early_refusal_after_mail_is_nobody_s_answer() {
        let rcpts = ["a@x.example", "b@x.example"];
        // In the same read as MAIL's reply: no reply is owed, the RCPT is never written.
        let mut s = greeted(cfg(), &rcpts, "250 mx\r\n");
        assert!(
            s.feed(b"250 2.1.0 Ok\r\n550 5.1.1 Mailbox unavailable\r\n")
                .is_err()
        );
        quits_and_finishes(&mut s);
        assert!(voided(&s), "{:?}", s.results());
        // In a read of its own it passes for a@'s answer, and every later reply is one
        // command late: QUIT is answered with b@'s reply.
        let mut s = greeted(cfg(), &rcpts, "250 mx\r\n");
        step(&mut s, "250 2.1.0 Ok\r\n");
        step(&mut s, "550 5.1.1 Mailbox unavailable\r\n");
        s.feed(b"250 2.1.5 Ok\r\n").unwrap();
        assert_eq!(s.next_action(), Action::Write(b"QUIT\r\n".to_vec()));
        assert!(s.feed(b"550 5.1.1 Mailbox unavailable\r\n").is_err());
        assert_eq!(s.next_action(), Action::Finished, "QUIT was sent already");
        assert!(voided(&s), "{:?}", s.results());
        // Pipelined, the group's count is met one reply early; the last one is left over.
        let mut s = greeted(cfg(), &rcpts, "250-mx\r\n250 PIPELINING\r\n");
        assert!(
            s.feed(b"250 2.1.0 Ok\r\n550 5.1.1 Mailbox unavailable\r\n250 2.1.5 Ok\r\n550 5.1.1 no\r\n")
                .is_err()
        );
        quits_and_finishes(&mut s);
        assert!(voided(&s), "{:?}", s.results());
    }

    /// The issue's second server: a stale reply again after each RCPT reply.
    #[test]
    fn a_stale_reply_after_each_rcpt_reply_voids_the_session() {
        let rcpts = ["a@x.example", "b@x.example"];
        for split in [false, true] {
            let mut s = greeted(cfg(), &rcpts, "250 mx\r\n");
            step(&mut s, "250 2.1.0 Ok\r\n");
            let err = if split {
                // The stale reply comes after RCPT b was written: b takes it, QUIT b's.
                step(&mut s, "250 2.1.5 Ok\r\n");
                s.feed(b"250 2.1.5 Ok\r\n").unwrap();
                assert_eq!(s.next_action(), Action::Write(b"QUIT\r\n".to_vec()));
                s.feed(b"550 5.1.1 <b@x.example>: User unknown\r\n")
            } else {
                s.feed(b"250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n")
            };
            assert!(err.is_err(), "split {split}");
            assert!(voided(&s), "split {split}: {:?}", s.results());
        }
    }

    #[test]
    fn a_code_impossible_for_its_command_voids_the_session() {
        let rcpts = ["a@x.example"];
        // (replies before the faulty one, the faulty one)
        let cases: [(&[&str], &str); 6] = [
            (&["220 mx\r\n"], "220 mx again\r\n"),
            (&["220 mx\r\n"], "221 bye\r\n"),
            (&["220 mx\r\n", "250 mx\r\n"], "354 go ahead\r\n"),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n"], "221 bye\r\n"),
            (&["220 mx\r\n", "250 mx\r\n", "250 ok\r\n"], "220 mx\r\n"),
            // QUIT answered by anything but 221, a 421 included.
            (
                &["220 mx\r\n", "250 mx\r\n", "250 ok\r\n", "250 ok\r\n"],
                "421 closing\r\n",
            ),
        ];
        for (before, faulty) in cases {
            let mut s = session(cfg(), &rcpts);
            for r in before {
                s.feed(r.as_bytes()).unwrap();
                while let Action::Write(_) = s.next_action() {}
            }
            assert!(s.feed(faulty.as_bytes()).is_err(), "{faulty:?}");
            assert!(voided(&s), "{faulty:?}: {:?}", s.end());
        }
        // The greeting may refuse, RCPT may say 251/252: those are in step.
        let mut s = greeted(cfg(), &["a@x.example", "b@x.example"], "250 mx\r\n");
        step(&mut s, "250 ok\r\n");
        step(&mut s, "251 will forward\r\n");
        step(&mut s, "252 cannot verify\r\n");
        assert_eq!(s.end(), Some(&SessionEnd::Completed));
        assert_eq!((code(&s, 0), code(&s, 1)), (251, 252));
    }

    #[test]
    fn a_reply_naming_another_recipient_voids_the_session() {
        let rcpts = ["a@x.example", "b@x.example"];
        let mut s = greeted(cfg(), &rcpts, "250-mx\r\n250 PIPELINING\r\n");
        // a@'s reply went missing: b@'s refusal arrives where a@'s should.
        let err = s.feed(b"250 ok\r\n550 5.1.1 <B@x.example>: Recipient address rejected\r\n");
        assert!(err.is_err());
        assert!(voided(&s), "{:?}", s.results());
        // MAIL's reply naming a recipient is an RCPT reply.
        let mut s = greeted(cfg(), &rcpts, "250-mx\r\n250 PIPELINING\r\n");
        assert!(s.feed(b"550 5.1.1 <a@x.example>: unknown\r\n").is_err());
        assert!(voided(&s));
        // Its own address, or the sender's, is in step.
        let mut s = greeted(cfg(), &rcpts, "250 mx\r\n");
        step(&mut s, "250 2.1.0 <check@probe.example>... Sender ok\r\n");
        step(&mut s, "550 5.1.1 <a@x.example>: User unknown\r\n");
        step(&mut s, "250 2.1.5 <b@x.example>... Recipient ok\r\n");
        assert_eq!(s.end(), Some(&SessionEnd::Completed));
        assert_eq!((code(&s, 0), code(&s, 1)), (550, 250));
    }

    #[test]
    fn a_lost_connection_drops_only_the_answers_of_a_group_cut_short() {
        let rcpts = ["a@x.example", "b@x.example", "c@x.example"];
        // Pipelined: a@ and b@ answered, c@'s reply never comes. Had MAIL's reply been the
        // lost one, a@'s answer would be MAIL's and b@'s a@'s.
        let mut s = greeted(cfg(), &rcpts, "250-mx\r\n250 PIPELINING\r\n");
        step(&mut s, "250 ok\r\n250 ok\r\n550 5.1.1 no\r\n");
        s.connection_lost();
        for i in 0..3 {
            assert_eq!(
                outcome(&s, i),
                RcptOutcome::NotProbed(NotProbedWhy::SessionEnded)
            );
        }
        // One RCPT at a time: each answer was complete before the next command.
        let mut s = greeted(cfg(), &rcpts, "250 mx\r\n");
        step(&mut s, "250 ok\r\n");
        step(&mut s, "250 ok\r\n");
        step(&mut s, "550 5.1.1 no\r\n");
        s.connection_lost();
        assert_eq!((code(&s, 0), code(&s, 1)), (250, 550));
        assert_eq!(
            outcome(&s, 2),
            RcptOutcome::NotProbed(NotProbedWhy::SessionEnded)
        );
        // Only QUIT's reply missing: every answer was counted in step.
        let mut s = greeted(cfg(), &["a@x.example"], "250-mx\r\n250 PIPELINING\r\n");
        s.feed(b"250 ok\r\n550 5.1.1 no\r\n").unwrap();
        assert_eq!(s.next_action(), Action::Write(b"QUIT\r\n".to_vec()));
        s.connection_lost();
        assert_eq!(code(&s, 0), 550);
    }

    #[test]
    fn no_quit_between_starttls_and_the_handshake() {
        let config = Config {
            tls: TlsPolicy::Require,
            ..cfg()
        };
        let mut s = greeted(config, &["a@x.example"], "250-mx\r\n250 STARTTLS\r\n");
        assert!(s.feed(b"220 go ahead\r\n250 injected\r\n").is_err());
        assert_eq!(s.next_action(), Action::Finished);
    }

    /// Property: a server out of step (a reply inserted, dropped, duplicated, delayed past the
    /// next, a stale copy after each RCPT reply, or the connection cut), its bytes split or
    /// merged across reads at random, never yields an RCPT answer the in-step dialogue would
    /// not have given that recipient: either the answers match or the session is void.
    ///
    /// One fault per dialogue: a lost reply and a stray one together restore the count, and
    /// two "250 Ok"s swapped are the same bytes, which no client can tell from an in-step
    /// dialogue. The refusals name their address (as Postfix's do); a swap of those is caught.
    mod out_of_step {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use std::collections::VecDeque;

        #[derive(Debug, Clone, Copy)]
        enum Fate {
            Accept,
            Reject,
            Defer,
        }

        /// An MTA that answers each command line it reads, in order.
        #[derive(Clone)]
        struct Script {
            pipelining: bool,
            rcpts: Vec<(String, Fate)>,
        }

        impl Script {
            fn reply(&self, line: &str) -> String {
                let upper = line.to_ascii_uppercase();
                if upper.starts_with("EHLO") {
                    return if self.pipelining {
                        "250-mx.x.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n".into()
                    } else {
                        "250 mx.x.example\r\n".into()
                    };
                }
                if upper.starts_with("HELO") {
                    return "250 mx.x.example\r\n".into();
                }
                if upper.starts_with("MAIL") {
                    return "250 2.1.0 Ok\r\n".into();
                }
                if upper.starts_with("RSET") {
                    return "250 2.0.0 Ok\r\n".into();
                }
                if upper.starts_with("QUIT") {
                    return "221 2.0.0 Bye\r\n".into();
                }
                let address = line
                    .strip_prefix("RCPT TO:<")
                    .and_then(|l| l.strip_suffix('>'))
                    .expect("only RCPT is left");
                let fate = self.rcpts.iter().find(|(a, _)| a == address).unwrap().1;
                match fate {
                    Fate::Accept => "250 2.1.5 Ok\r\n".into(),
                    Fate::Reject => format!(
                        "550-5.1.1 <{address}>: Recipient address rejected:\r\n550 5.1.1 User unknown\r\n"
                    ),
                    Fate::Defer => {
                        format!("450 4.2.0 <{address}>: Recipient address rejected: Greylisted\r\n")
                    }
                }
            }
        }

        #[derive(Debug, Clone)]
        enum Fault {
            None,
            /// This reply right before the script's reply number `at` (the greeting is 0).
            Insert {
                at: usize,
                reply: String,
            },
            Drop {
                at: usize,
            },
            Duplicate {
                at: usize,
            },
            /// Reply `at` comes after reply `at + 1`.
            Delay {
                at: usize,
            },
            /// Every RCPT reply comes twice.
            StaleAfterEachRcpt,
            /// The connection ends before reply `at`.
            Cut {
                at: usize,
            },
        }

        /// How much one read takes from what the server has sent.
        #[derive(Debug, Clone, Copy)]
        enum Read {
            Bytes(usize),
            Replies(usize),
        }

        /// The scripted MTA with its fault: what it has sent and not yet been read, reply by
        /// reply (a read may end inside one).
        struct Server<'a> {
            script: &'a Script,
            fault: &'a Fault,
            produced: usize,
            sent: VecDeque<Vec<u8>>,
            held: Option<String>,
            cut: bool,
            line: Vec<u8>,
        }

        impl Server<'_> {
            fn answer(&mut self, reply: String, rcpt: bool) {
                let k = self.produced;
                self.produced += 1;
                match self.fault {
                    Fault::Cut { at } if *at == k => self.cut = true,
                    Fault::Insert { at, reply: x } if *at == k => {
                        self.send(x.clone());
                        self.send(reply);
                    }
                    Fault::Drop { at } if *at == k => {}
                    Fault::Duplicate { at } if *at == k => {
                        self.send(reply.clone());
                        self.send(reply);
                    }
                    Fault::StaleAfterEachRcpt if rcpt => {
                        self.send(reply.clone());
                        self.send(reply);
                    }
                    Fault::Delay { at } if *at == k => self.held = Some(reply),
                    Fault::Delay { at } if *at + 1 == k => {
                        self.send(reply);
                        if let Some(held) = self.held.take() {
                            self.send(held);
                        }
                    }
                    _ => self.send(reply),
                }
            }

            fn send(&mut self, reply: String) {
                if !self.cut {
                    self.sent.push_back(reply.into_bytes());
                }
            }

            fn receive(&mut self, bytes: &[u8]) {
                for &b in bytes {
                    self.line.push(b);
                    if b == b'\n' {
                        let line = String::from_utf8(std::mem::take(&mut self.line)).unwrap();
                        let line = line.trim_end();
                        let rcpt = line.starts_with("RCPT");
                        let reply = self.script.reply(line);
                        self.answer(reply, rcpt);
                    }
                }
            }

            fn read(&mut self, read: Read) -> Vec<u8> {
                let mut chunk = Vec::new();
                match read {
                    Read::Bytes(n) => {
                        while chunk.len() < n {
                            let Some(front) = self.sent.front_mut() else {
                                break;
                            };
                            let want = n - chunk.len();
                            if front.len() <= want {
                                chunk.extend(self.sent.pop_front().unwrap());
                            } else {
                                chunk.extend(front.drain(..want));
                            }
                        }
                    }
                    Read::Replies(n) => {
                        for reply in self.sent.drain(..n.min(self.sent.len())) {
                            chunk.extend(reply);
                        }
                    }
                }
                chunk
            }
        }

        /// One dialogue, driven as the prober does: write all there is, then read.
        fn dialogue(
            config: &Config,
            script: &Script,
            fault: &Fault,
            reads: &[Read],
        ) -> (Vec<RcptOutcome>, Option<SessionEnd>) {
            let rcpts = script.rcpts.iter().map(|(a, _)| a.clone()).collect();
            let mut s = Session::new(config.clone(), rcpts).unwrap();
            let mut server = Server {
                script,
                fault,
                produced: 0,
                sent: VecDeque::new(),
                held: None,
                cut: false,
                line: Vec::new(),
            };
            server.answer("220 mx.x.example ESMTP\r\n".into(), false);
            for n in 0.. {
                assert!(n < 10_000, "the dialogue ends");
                loop {
                    match s.next_action() {
                        Action::Write(bytes) => {
                            let text = String::from_utf8(bytes.clone()).unwrap();
                            assert!(!text.to_ascii_uppercase().contains("DATA"), "{text}");
                            server.receive(&bytes);
                        }
                        Action::ReadMore => break,
                        // A kept connection's job is over: its answers are final here.
                        Action::Finished | Action::Idle => {
                            let outcomes = s.results().into_iter().map(|r| r.outcome).collect();
                            return (outcomes, s.end().cloned());
                        }
                        Action::StartTls => panic!("TLS is off"),
                    }
                }
                if server.sent.is_empty() {
                    // Closed, or silent until the deadline.
                    s.connection_lost();
                    let outcomes = s.results().into_iter().map(|r| r.outcome).collect();
                    return (outcomes, s.end().cloned());
                }
                let chunk = server.read(reads[n % reads.len()]);
                let _ = s.feed(&chunk);
            }
            unreachable!()
        }

        fn fate() -> impl Strategy<Value = Fate> {
            prop_oneof![Just(Fate::Accept), Just(Fate::Reject), Just(Fate::Defer)]
        }

        fn fault(rcpts: usize) -> impl Strategy<Value = Fault> {
            let at = 0usize..24;
            let stray = prop_oneof![
                Just("250 2.1.5 Ok\r\n".to_string()),
                Just("550 5.1.1 Mailbox unavailable\r\n".to_string()),
                Just("450 4.7.1 Try again later\r\n".to_string()),
                Just("221 2.0.0 Bye\r\n".to_string()),
                Just("220 mx.x.example ESMTP\r\n".to_string()),
                Just("354 go ahead\r\n".to_string()),
                Just("421 4.7.0 closing\r\n".to_string()),
                (0..rcpts).prop_map(|i| format!("550 5.1.1 <r{i}@x.example>: User unknown\r\n")),
            ];
            prop_oneof![
                1 => Just(Fault::None),
                3 => (at.clone(), stray).prop_map(|(at, reply)| Fault::Insert { at, reply }),
                3 => at.clone().prop_map(|at| Fault::Drop { at }),
                2 => at.clone().prop_map(|at| Fault::Duplicate { at }),
                2 => at.clone().prop_map(|at| Fault::Delay { at }),
                1 => Just(Fault::StaleAfterEachRcpt),
                1 => at.prop_map(|at| Fault::Cut { at }),
            ]
        }

        fn read() -> impl Strategy<Value = Read> {
            prop_oneof![
                (1usize..40).prop_map(Read::Bytes),
                (1usize..4).prop_map(Read::Replies),
            ]
        }

        fn case() -> impl Strategy<Value = (Config, Script, Fault, Vec<Read>)> {
            (
                vec(fate(), 1..=5),
                any::<bool>(),
                1usize..=4,
                1usize..=4,
                any::<bool>(),
            )
                .prop_flat_map(
                    |(fates, pipelining, batch_size, max_rejections, keep_open)| {
                        let n = fates.len();
                        let config = Config {
                            batch_size,
                            max_rejections,
                            keep_open,
                            ..cfg()
                        };
                        let script = Script {
                            pipelining,
                            rcpts: fates
                                .into_iter()
                                .enumerate()
                                .map(|(i, f)| (format!("r{i}@x.example"), f))
                                .collect(),
                        };
                        (Just(config), Just(script), fault(n), vec(read(), 1..8))
                    },
                )
        }

        impl fmt::Debug for Script {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "pipelining {} {:?}", self.pipelining, self.rcpts)
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 1000,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn no_fault_yields_an_answer_the_in_step_dialogue_would_not(
                (config, script, fault, reads) in case()
            ) {
                let (in_step, in_step_end) =
                    dialogue(&config, &script, &Fault::None, &[Read::Replies(1)]);
                prop_assert!(
                    matches!(in_step_end, Some(SessionEnd::Completed | SessionEnd::TooManyRejections)),
                    "{:?}", in_step_end
                );
                let (got, end) = dialogue(&config, &script, &fault, &reads);
                if matches!(fault, Fault::None) {
                    // Only the reads differ: the same dialogue.
                    prop_assert_eq!(&got, &in_step);
                    prop_assert_eq!(&end, &in_step_end);
                }
                // What an answer says about the mailbox: its class and decoded reason (MAIL's
                // "250 2.1.0 Ok" taken for an RCPT's "250 2.1.5 Ok" says the same).
                let meaning = |r: &Reply| (r.code / 100, super::super::super::reply::classify(r).reason);
                for (i, (got, want)) in got.iter().zip(&in_step).enumerate() {
                    if let RcptOutcome::Probed(reply) = got {
                        prop_assert_eq!(
                            Some(meaning(reply)),
                            match want {
                                RcptOutcome::Probed(r) => Some(meaning(r)),
                                _ => None,
                            },
                            "recipient {} got {} (end {:?})", i, reply, end
                        );
                    }
                }
            }
        }
    }
}
