//! SMTP reply text → (reason, permanence, status, action): the decoder of the SMTP stage.
//!
//! Sans-IO and pure. [`Reply::parse`] reads the text of one reply (RFC 5321 §4.2), and
//! [`classify`] decides what it says about the *recipient's mailbox*. The I/O side (reading
//! lines off a socket, bounding their length, retrying greylisted deferrals) belongs to the
//! probe, not here.
//!
//! # Parsing
//!
//! A reply is one or more lines `CODE SP text` (the last) or `CODE - text` (the ones before it),
//! all with the same three-digit code. An RFC 3463 enhanced status code (`5.1.1`) may open each
//! line's text. [`Reply::parse`] accepts what servers and logs actually produce:
//! - LF, CRLF or lone-CR line ends, blank lines, and surrounding blanks are ignored;
//! - the non-standard `550:` form (a colon after the code, seen in Yahoo-relayed bounces) counts
//!   as a last line;
//! - the enhanced code (also qmail's `#5.1.1`, and `5.7.0,` with a trailing comma, colon or
//!   semicolon) is taken from the first line; where a later line
//!   repeats it, the repeat is dropped. The line texts are joined with a space, so a phrase
//!   that a server wrapped over two lines reads as one;
//! - a text that ends on a continuation line (`550-…` with nothing after it: a reply cut short
//!   by a log or a copy) is decoded from the lines it has.
//!
//! It refuses, with a [`ReplyError`] and never a panic: lines without a leading code (garbage,
//! or a bounce's bare `Status: 5.1.1` text), codes outside 2xx–5xx, a line whose code differs from
//! the first line's, and any line after the last line. The last two mean the text holds several
//! replies (a transcript such as `354 …` then `451 …`), and picking one for the caller would
//! be a guess.
//!
//! Why not `smtp-proto` (stalwart's sans-IO SMTP parser, 0.2.5 checked)? Its
//! `ResponseReceiver` is built for a live socket and does not fit a text decoder: it rejects the
//! `550:` form ("Invalid response separator"), silently accepts continuation lines with another
//! code (`550-…\n451 …` parses as 550), wants a final line end (otherwise `NeedsMoreData`), and
//! reports a missing enhanced code as `[0, 0, 0]`. The parser here is about sixty lines.
//!
//! # Classifying
//!
//! [`classify`] decides in this order; the first step that recognises the reply wins:
//! 1. 2xx/3xx: 250 and 251 accept the mailbox; any other positive or intermediate reply is
//!    not an answer to RCPT (`protocol-error`).
//! 2. The text blames the *sending side*: sending rate or connection limits (`rate-limited`),
//!    explicit greylisting on a 4xx (`greylisted`), or the prober's IP, reputation, reverse DNS,
//!    authentication (SPF, DKIM, DMARC), HELO or sender address (`prober-blocked`). Such a
//!    rejection says nothing about the mailbox, whatever enhanced code it carries. A host that
//!    takes no mail at all (`521`, `554 No SMTP service here`) is `smtp-unreachable`. The
//!    domain's own server saying in its MTA's words that it does not host the domain
//!    (Exchange's `550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain`, qmail's
//!    `553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)`) is
//!    `no-such-domain`, whatever X.7 code it carries: the SMTP stage asks only the domain's own
//!    MX hosts, so mail for the domain goes nowhere. A bare relay refusal (`Relay access
//!    denied`, `relay not permitted`) does not say that and stays `policy-rejected`.
//! 3. The enhanced code, where it is specific (X.1.1, X.2.2, X.7.x …), and only if its class
//!    agrees with the reply code (`550 4.2.2` is inconsistent; the reply code is what SMTP
//!    clients act on, so the enhanced code is then ignored).
//! 4. Text patterns, for generic enhanced codes (X.0.0, X.1.0, X.2.0, X.3.0, X.4.x, X.5.0, X.6.x)
//!    or none. Servers put mailbox answers under generic codes: Outlook's
//!    `550 5.5.0 Requested action not taken: mailbox unavailable`, Yahoo's `554 delivery error:
//!    dd This user doesn't have a yahoo.com account`, Exchange Online's
//!    `550 5.4.1 Recipient address rejected: Access denied` (its directory has no such user).
//! 5. What a generic enhanced code still says (X.1.0 an address problem, X.3.x/X.4.x the
//!    receiving system, X.6.x the content).
//! 6. The reply code alone (421 rate limiting, 450/451 greylisting, 552 storage, …).
//! 7. A safety net: a mailbox verdict (invalid) on a 500-504 reply about the address's syntax
//!    (`501 5.1.3 Bad recipient address syntax`) becomes `protocol-error`, since prebounce sends
//!    only addresses that passed its syntax stage; one whose text says the mailbox is full
//!    becomes `mailbox-full` (`552 5.1.1 Boite du destinataire pleine`); one under an X.7.x code
//!    or whose text also cites a policy, content or relay rule becomes `policy-rejected`.
//!
//! An address is only ever **invalid** on a permanent (5xx) reply that positively says the
//! mailbox or domain does not exist or is disabled. A 4xx never makes it invalid
//! (`deferred`), nor does an X.7.x code, a full mailbox (even under 5xx), or a refusal we cannot
//! attribute (`unrecognized`). Suppressing a live subscriber costs more than leaving an address
//! undecided, so doubt resolves to unknown. Two readings win over an X.7.x code, because the
//! text is more specific than the code: the not-hosted domain above, and a plain user-unknown
//! text that names no policy, access, relay or filter rule (`550 5.7.1 <a@b>: Recipient address
//! rejected: User unknown` is `mailbox-not-found`; `550 5.7.1 User unknown or access denied`
//! stays `policy-rejected`, and a blocklist text is `prober-blocked` at step 2 whatever else it
//! says). Exim's `550 Unrouteable address` from the domain's own server is `mailbox-not-found`
//! (its routers know the domain but not the local part; an unknown domain reads
//! `Unrouteable domain`), and RFC 5321's `553 Requested action not taken: mailbox name not
//! allowed` is `mailbox-not-found`.
//!
//! A 4xx whose text is a definitive recipient-table miss (Postfix's `450 4.1.1 <a@b>: Recipient
//! address rejected: User unknown in local recipient table`) stays `deferred`, with its own
//! explanation. Postfix answers 450 there only when its administrator asked it to
//! (`unknown_local_recipient_reject_code = 450`: postconf(5) calls it "safer to initially use
//! 450 (try again later) so you have time to find out if your local_recipient_maps settings are
//! OK"; or `soft_bounce = yes`), that is when the table is not trusted. Some servers keep that setting for good (a widely copied tutorial sets it),
//! but one reply cannot tell those from a table being set up, and the SMTP stage's retries of
//! deferred recipients come within minutes, before a table would change. So a miss that
//! persists across those retries stays unknown (the planner reports the last reply once its
//! retries are spent): RFC 5321's temporary class is taken at its word.
//!
//! `550 5.7.1 recipient rejected by policy` is `policy-rejected`, not `prober-blocked`: the text
//! names the recipient and a rule of the receiving side (closed lists, internal-only mailboxes)
//! and does not mention the prober's IP, domain or reputation. Both are unknown; they differ in
//! the action (investigate the address versus fix the sending setup).
//!
//! Text patterns are lower-case phrases written for this module; sisimai's reason tables
//! (BSD-2-Clause) were read to learn which phrases servers use, nothing was copied. In a pattern,
//! `*` stands for any text, and a phrase edge that is a letter or digit must sit on a word
//! boundary (`rbl` does not match inside `herbly`), unless it touches a `*` (`throttl*`).

use serde::Serialize;

pub use crate::model::reply::{EnhancedCode, Reply, ReplyError};
use crate::model::{Action, Reason, Status};

// ------------------------------------------------------------------------------------------
// Parsing
// ------------------------------------------------------------------------------------------

// ------------------------------------------------------------------------------------------
// Decoding
// ------------------------------------------------------------------------------------------

/// What the server said about the permanence of its refusal: 5xx hard, 4xx soft. This is the
/// reply's own claim; what it implies for the address is [`Decoding::status`] (a hard
/// `552 5.2.2` full mailbox is still only unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permanence {
    Hard,
    Soft,
}

impl Permanence {
    /// 5xx hard, 4xx soft; None for 2xx and 3xx, which refuse nothing.
    pub fn of_code(code: u16) -> Option<Permanence> {
        match code / 100 {
            5 => Some(Permanence::Hard),
            4 => Some(Permanence::Soft),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permanence::Hard => "hard",
            Permanence::Soft => "soft",
        }
    }
}

/// What one reply means for the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decoding {
    pub reason: Reason,
    /// The reply's own claim (5xx hard, 4xx soft); None when nothing was refused or no reply
    /// came.
    pub permanence: Option<Permanence>,
    /// Always `reason.status()`.
    pub status: Status,
    /// Always `reason.action()`.
    pub action: Action,
    /// Which rule decided, for people.
    pub explanation: &'static str,
}

impl Decoding {
    fn new(reason: Reason, permanence: Option<Permanence>, explanation: &'static str) -> Self {
        Decoding {
            reason,
            permanence,
            status: reason.status(),
            action: reason.action(),
            explanation,
        }
    }

    /// For the probe: no MX host accepted a connection or would talk SMTP.
    pub fn unreachable() -> Self {
        Decoding::new(
            Reason::SmtpUnreachable,
            None,
            "no mail server of the domain accepted a connection or would talk SMTP",
        )
    }

    /// For the probe: no reply in time, after the retries.
    pub fn timeout() -> Self {
        Decoding::new(
            Reason::SmtpTimeout,
            None,
            "the mail server did not answer in time, after the retries",
        )
    }
}

/// The JSON that `prebounce explain "<reply text>"` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainedReply {
    pub code: u16,
    /// `"5.1.1"`, or null.
    pub enhanced: Option<EnhancedCode>,
    pub text: String,
    /// `"hard"`, `"soft"`, or null for 2xx/3xx.
    pub permanence: Option<Permanence>,
    pub reason: Reason,
    /// The verdict it implies for the address: valid, invalid or unknown.
    pub status: Status,
    pub action: Action,
    /// The action in words.
    pub advice: &'static str,
    pub explanation: &'static str,
}

impl ExplainedReply {
    pub fn new(reply: &Reply) -> Self {
        let d = classify(reply);
        ExplainedReply {
            code: reply.code,
            enhanced: reply.enhanced,
            text: reply.text.clone(),
            permanence: d.permanence,
            reason: d.reason,
            status: d.status,
            action: d.action,
            advice: d.action.advice(),
            explanation: d.explanation,
        }
    }
}

/// Parse and decode a reply text: what `prebounce explain` does.
pub fn explain(text: &str) -> Result<ExplainedReply, ReplyError> {
    Reply::parse(text).map(|r| ExplainedReply::new(&r))
}

/// Decode one reply (pure). See the module documentation for the order of the rules.
pub fn classify(reply: &Reply) -> Decoding {
    let (reason, explanation) = decide(reply);
    Decoding::new(reason, Permanence::of_code(reply.code), explanation)
}

type Decided = (Reason, &'static str);

fn decide(reply: &Reply) -> Decided {
    use Reason::*;
    let code = reply.code;
    match code {
        250 | 251 => {
            return (
                MailboxAccepted,
                "250/251: the server accepts mail for this mailbox",
            );
        }
        200..=399 => {
            return (
                ProtocolError,
                "a positive or intermediate reply other than 250/251 is not an answer to RCPT",
            );
        }
        _ => {}
    }
    let hard = code >= 500;
    let text = normalize(&reply.text);
    let t = text.as_str();
    let enhanced = reply.enhanced.filter(|e| u16::from(e.class) == code / 100);
    let decided = blames_sender(t, hard)
        .or_else(|| no_smtp(code, t))
        .or_else(|| not_hosted(t, hard))
        .or_else(|| enhanced.and_then(|e| by_enhanced(e, code, t)))
        .or_else(|| by_text(t, hard))
        .or_else(|| enhanced.and_then(|e| by_generic_enhanced(e, hard)))
        .unwrap_or_else(|| by_code(code));
    if decided.0 == Deferred && has(t, TABLE_MISS) {
        return (
            Deferred,
            "a temporary (4xx) reply whose text is a recipient-table miss (\"User unknown in \
             local recipient table\"): the table has no such user, but the server chose a code \
             that says the answer may change (a table being set up, soft_bounce, a pending \
             verification), so the address stays unknown and is retried",
        );
    }
    // 500-504 say the command or its arguments were malformed. prebounce sends only addresses
    // that passed its syntax stage, so `501 5.1.3 Bad recipient address syntax` is a protocol
    // matter (a server whose parser disagrees), never proof that the mailbox does not exist.
    // A 50x whose text says the user is unknown (`500 No such user`) is still read as it says.
    if decided.0.status() == Status::Invalid
        && (500..=504).contains(&code)
        && (reply
            .enhanced
            .is_some_and(|e| e.subject == 1 && e.detail == 3)
            || has(t, PROTOCOL))
    {
        return (
            ProtocolError,
            "500-504 about the address's syntax (X.1.3, \"syntax\"): the address was sent \
             well-formed, so this is a protocol disagreement, not an answer about the mailbox",
        );
    }
    // The domain's own server saying, in its MTA's words, that it does not host the domain:
    // decided by `not_hosted`, whose phrases carry X.7 codes and the word "relay" themselves.
    if decided.0 == NoSuchDomain && has(t, NOT_HOSTED) {
        return decided;
    }
    if decided.0.status() == Status::Invalid && has(t, FULL) {
        return (
            MailboxFull,
            "the reply reads as a missing mailbox, but its text says the mailbox is full: a full \
             mailbox exists, so the address is unknown",
        );
    }
    // An X.7 (security/policy) code anywhere in the reply, even on a later line or with a class
    // that disagrees with the reply code, is about policy, not the mailbox: never invalid.
    // The one exception: a plain user-unknown text with no word of policy (see
    // `plain_user_unknown`), where the specific text wins over the generic code.
    if decided.0.status() == Status::Invalid
        && (reply.enhanced.is_some_and(|e| e.subject == 7) || mentions_policy_code(&reply.text))
        && !(decided.0 == MailboxNotFound && plain_user_unknown(t))
    {
        return (
            PolicyRejected,
            "the reply carries a security/policy status code (X.7.x): a policy decision, not \
             proof that the mailbox does not exist",
        );
    }
    if decided.0.status() == Status::Invalid && has(t, POLICY_VETO) {
        return (
            PolicyRejected,
            "the reply names the mailbox but also a policy, content or relay rule: not proof \
             that the mailbox does not exist",
        );
    }
    decided
}

/// A mailbox-level answer: final under 5xx, only a deferral under 4xx.
fn mailbox(hard: bool, reason: Reason, why: &'static str) -> Decided {
    if hard {
        (reason, why)
    } else {
        (
            Reason::Deferred,
            "a temporary (4xx) answer about the mailbox or domain: the server has not decided",
        )
    }
}

/// Step 2 too: the domain's own mail server says, in its MTA's own words, that it does not
/// host the recipient's domain (Exchange's `550 5.7.54 SMTP; Unable to relay recipient in
/// non-accepted domain`, qmail's `553 sorry, that domain isn't in my list of allowed rcpthosts
/// (#5.7.1)`). The SMTP stage asks only the domain's own MX hosts, so the domain's mail goes
/// nowhere: `no-such-domain`, whatever X.7 code the MTA attaches. A bare relay refusal
/// (`Relay access denied`, `relaying denied`) does not say which side is misconfigured and
/// stays `policy-rejected`.
fn not_hosted(t: &str, hard: bool) -> Option<Decided> {
    has(t, NOT_HOSTED).then(|| {
        mailbox(
            hard,
            Reason::NoSuchDomain,
            "the domain's own mail server says it does not host the recipient's domain (not an \
             accepted domain, not in its rcpthosts): mail for that domain goes nowhere",
        )
    })
}

/// A user-unknown text that names no rule: under an X.7.x code, it is still the server's
/// answer about the mailbox (`550 5.7.1 <a@b>: Recipient address rejected: User unknown`). Any
/// word of policy, access, relay or filtering keeps the X.7 reading (never invalid).
fn plain_user_unknown(t: &str) -> bool {
    has(t, USER_UNKNOWN) && !has(t, POLICY) && !has(t, POLICY_VETO)
}

/// Step 2: the reply is about the prober (or its volume), whatever else it says.
fn blames_sender(t: &str, hard: bool) -> Option<Decided> {
    if has(t, RATE) {
        return Some((
            Reason::RateLimited,
            "the text says the prober sent too much or too fast (rate, connection or recipient \
             limits): a throttle, not an answer about the mailbox",
        ));
    }
    if !hard && has(t, GREYLISTING) {
        return Some((
            Reason::Greylisted,
            "the text says greylisting: the first attempts from a new sender are deferred",
        ));
    }
    if has(t, SENDER) {
        return Some((
            Reason::ProberBlocked,
            "the text blames the sending side (blocklist, reputation, reverse DNS, SPF/DKIM/DMARC, \
             authentication, HELO or sender address): the server refused the prober, which says \
             nothing about the mailbox",
        ));
    }
    None
}

/// Step 2 too: the host takes no SMTP mail at all (RFC 5321 §3.1 `554 No SMTP service here`,
/// RFC 7504 `521`), whatever enhanced code (often 5.3.2) it adds.
fn no_smtp(code: u16, t: &str) -> Option<Decided> {
    (code == 521 || has(t, NO_SMTP)).then_some((
        Reason::SmtpUnreachable,
        "521 or \"no SMTP service\": this host does not take mail; other MX hosts may",
    ))
}

/// Step 3: specific enhanced codes.
fn by_enhanced(e: EnhancedCode, code: u16, t: &str) -> Option<Decided> {
    use Reason::*;
    let hard = code >= 500;
    Some(match (e.subject, e.detail) {
        (1, 1 | 3 | 4 | 6) => mailbox(
            hard,
            MailboxNotFound,
            "enhanced code X.1.1/X.1.3/X.1.4/X.1.6: the destination mailbox does not exist, is \
             malformed, ambiguous or gone",
        ),
        (1, 2) => mailbox(
            hard,
            NoSuchDomain,
            "enhanced code X.1.2: the destination domain does not exist or is not served here",
        ),
        // RFC 7505 made X.1.10 "null MX"; Exchange had used 5.1.10 for unknown recipients.
        (1, 10) if has(t, NOT_FOUND) => mailbox(
            hard,
            MailboxNotFound,
            "enhanced code X.1.10 with a recipient-not-found text (Exchange's use of 5.1.10)",
        ),
        (1, 10) => mailbox(
            hard,
            NoSuchDomain,
            "enhanced code X.1.10: the recipient's domain publishes a null MX (RFC 7505)",
        ),
        (1, 7 | 8) => (
            ProberBlocked,
            "enhanced code X.1.7/X.1.8: the server refused the prober's sender address or domain",
        ),
        (2, 1) if hard && has(t, TEMPORARY) => (
            Deferred,
            "enhanced code X.2.1 (mailbox disabled) with a text that calls it temporary",
        ),
        (2, 1) => mailbox(
            hard,
            MailboxDisabled,
            "enhanced code X.2.1: the mailbox is disabled and not accepting messages",
        ),
        (2, 2) => (
            MailboxFull,
            "enhanced code X.2.2: the mailbox is full; that can change, so the address is unknown",
        ),
        (2, 3) | (3, 4) => (
            PolicyRejected,
            "enhanced code X.2.3/X.3.4: the message is larger than the mailbox or system allows",
        ),
        (2, 4) => (
            ServerError,
            "enhanced code X.2.4: a mailing-list expansion problem on the receiving side",
        ),
        (3, 1..=5) => (
            ServerError,
            "enhanced code X.3.x: the receiving mail system is full, down or misconfigured",
        ),
        (5, 3) => (
            RateLimited,
            "enhanced code X.5.3: too many recipients in one transaction",
        ),
        (5, 1 | 2 | 4 | 5 | 6) => (
            ProtocolError,
            "enhanced code X.5.x: a command, its syntax or its arguments were refused",
        ),
        (7, _) => by_security(e, code, t),
        _ => return None,
    })
}

/// X.7.x: security or policy. Never a verdict on the mailbox.
fn by_security(e: EnhancedCode, code: u16, t: &str) -> Decided {
    use Reason::*;
    match e.detail {
        4 | 5 | 8 | 9 | 10 | 11 | 23..=27 => (
            ProberBlocked,
            "enhanced code X.7.x names an authentication, encryption, SPF/DKIM/DMARC or reverse-DNS \
             failure of the sending side",
        ),
        2 | 3 => (
            PolicyRejected,
            "enhanced code X.7.2/X.7.3: a mailing-list or conversion rule of the receiving side",
        ),
        0 if code == 421 => (
            RateLimited,
            "421 4.7.0: the server closed the connection on the prober, usually a rate or \
             connection limit",
        ),
        _ if (code == 450 || code == 451) && has(t, RETRY_LATER) => (
            Greylisted,
            "450/451 X.7.x asking to try again later: greylisting or a similar deferral",
        ),
        _ if plain_user_unknown(t) => mailbox(
            code >= 500,
            MailboxNotFound,
            "enhanced code X.7.x, but the text plainly says the user is unknown and names no \
             policy: the specific text wins over the generic security code",
        ),
        _ if has(t, POLICY) || has(t, RECIPIENT) || has(t, NOT_FOUND) || has(t, DISABLED) => (
            PolicyRejected,
            "enhanced code X.7.x with a text about the recipient or a rule of the receiving side: \
             refused by policy, which never proves that the mailbox does not exist",
        ),
        _ => (
            ProberBlocked,
            "enhanced code X.7.x (security or policy) with no text about the recipient: the \
             server refused the prober, which says nothing about the mailbox",
        ),
    }
}

/// Step 4: text patterns.
fn by_text(t: &str, hard: bool) -> Option<Decided> {
    use Reason::*;
    Some(if has(t, NULL_MX) {
        mailbox(
            hard,
            NoSuchDomain,
            "the text says the recipient's domain accepts no mail (null MX)",
        )
    } else if has(t, FULL) {
        (
            MailboxFull,
            "the text says the mailbox is full or over quota; that can change, so the address is \
             unknown",
        )
    } else if has(t, DISABLED) {
        if hard && has(t, TEMPORARY) {
            (
                Deferred,
                "the text says the mailbox is disabled, but only temporarily",
            )
        } else {
            mailbox(
                hard,
                MailboxDisabled,
                "the text says the mailbox is disabled, suspended or inactive",
            )
        }
    } else if has(t, DOMAIN) {
        mailbox(
            hard,
            NoSuchDomain,
            "the text says the recipient's domain does not exist",
        )
    } else if has(t, NOT_FOUND) {
        mailbox(
            hard,
            MailboxNotFound,
            "the text says the user or mailbox is unknown",
        )
    } else if has(t, SERVER) {
        (
            ServerError,
            "the text describes a failure of the receiving system (local error, loop, routing, \
             timeout)",
        )
    } else if has(t, POLICY) {
        (
            PolicyRejected,
            "the text cites a rule of the receiving side (policy, relay, content, size)",
        )
    } else if has(t, PROTOCOL) {
        (
            ProtocolError,
            "the text says a command or its syntax was refused",
        )
    } else {
        return None;
    })
}

/// Step 5: what a generic enhanced code still says.
fn by_generic_enhanced(e: EnhancedCode, hard: bool) -> Option<Decided> {
    use Reason::*;
    Some(match e.subject {
        1 if e.detail == 0 => mailbox(
            hard,
            MailboxNotFound,
            "enhanced code X.1.0 (address status) and no text that says otherwise: the address \
             was refused",
        ),
        3 | 4 => (
            ServerError,
            "enhanced code X.3.x/X.4.x: a mail system, network or routing problem of the \
             receiving side",
        ),
        6 => (
            PolicyRejected,
            "enhanced code X.6.x: the receiving side refused the content",
        ),
        _ => return None,
    })
}

/// Step 6: the reply code alone.
fn by_code(code: u16) -> Decided {
    use Reason::*;
    match code {
        421 => (
            RateLimited,
            "421: the server closed the connection, usually a rate or connection limit",
        ),
        450 | 451 => (
            Greylisted,
            "450/451 without a more specific cause: greylisting or a similar deferral",
        ),
        452 => (
            ServerError,
            "452: insufficient system storage on the receiving side",
        ),
        400..=499 => (
            Deferred,
            "a temporary (4xx) refusal without a more specific cause",
        ),
        500..=504 | 555 => (
            ProtocolError,
            "500-504/555: the server refused a command or its syntax",
        ),
        530 | 534 | 535 | 538 => (
            ProberBlocked,
            "530/534/535/538: the server wants authentication or encryption from the prober",
        ),
        551 => (MailboxNotFound, "551: the user is not local to this server"),
        552 => (
            MailboxFull,
            "552: the mailbox exceeded its storage allocation",
        ),
        556 => (
            NoSuchDomain,
            "556: the recipient's domain does not accept mail (RFC 7504)",
        ),
        _ => (
            Unrecognized,
            "a permanent refusal whose code and text do not say why: nothing is known about the \
             mailbox",
        ),
    }
}

// ------------------------------------------------------------------------------------------
// Text patterns (lower case; see the module documentation for `*` and word boundaries)
// ------------------------------------------------------------------------------------------

/// The prober sends too much or too fast.
const RATE: &[&str] = &[
    "too many connections",
    "too many concurrent",
    "too many simultaneous",
    "too many sessions",
    "too many smtp",
    "too many errors",
    "too many recipients",
    "too many rcpt",
    "too many invalid",
    "too many unknown",
    "too many bad",
    "too many failed",
    "too many messages from",
    "too many mails",
    "too many emails",
    "too many requests",
    "too many attempts",
    "too many * from your",
    "too many * from this",
    "too many * per",
    "rate limit*",
    "rate-limit*",
    "ratelimit*",
    "rate exceeded",
    "unusual rate",
    "sending rate",
    "at a rate that",
    "too quickly",
    "too fast",
    "throttl*",
    "slow down",
    "try again slower",
    "frequency limit*",
    "connection limit",
    "connections limit",
    "maximum connection*",
    "max connection*",
    "maximum number of connections",
    "concurrent connections",
    "unexpected volume",
    "message quota",
    "sending quota",
    "daily quota",
    "per hour",
    "trop de connexions",
];

/// Explicit greylisting (only read on 4xx replies).
const GREYLISTING: &[&str] = &[
    "greylist*",
    "graylist*",
    "grey list*",
    "gray list*",
    "grey-list*",
    "gray-list*",
    "postgrey",
];

/// The server blames the sending side: its IP, reputation, DNS, authentication or identity.
const SENDER: &[&str] = &[
    // Blocklists and reputation.
    "spamhaus",
    "spamcop",
    "sorbs",
    "barracuda*",
    "uceprotect",
    "abuseat",
    "spamrats",
    "mailspike",
    "psbl",
    "dronebl",
    "surbl",
    "uribl",
    "dnsbl*",
    "rbl",
    "rbls",
    "blacklist*",
    "black list*",
    "blocklist*",
    "block list*",
    "denylist*",
    "deny list*",
    "blocked",
    "banned",
    "listed at",
    "reputation",
    "senderscore",
    "sender score",
    "abuse",
    "abus",
    "abusive",
    // Spam (a probe carries no content, so this is about the sender).
    "spam",
    "spammer*",
    "spamming",
    "unsolicited",
    "bulk mail",
    "bulk email",
    // The connecting host.
    "your ip*",
    "ip address",
    "ip addresses",
    "sending ip*",
    "sender ip*",
    "client ip*",
    "ip name lookup",
    "your host",
    "your server",
    "your mail server",
    "your mta",
    "your network",
    "your isp",
    "your access",
    "your remotehost",
    "remotehost",
    "client host",
    "sending host",
    "sending server",
    "sending mta",
    "dynamic",
    "dial-up",
    "dialup",
    "residential",
    "zombie*",
    "botnet",
    "open proxy",
    "compromised",
    "not allowed to connect",
    "confirm this mail server",
    "has not passed validation",
    // Reverse DNS and HELO.
    "ptr",
    "rdns",
    "reverse dns",
    "reverse-dns",
    "reverse lookup",
    "reverse hostname",
    "reverse name",
    "reverse mapping",
    "fcrdns",
    "forward dns",
    "your hostname",
    "resolve your address",
    "helo command rejected",
    "ehlo command rejected",
    "invalid helo",
    "bad helo",
    "helo name",
    "helo hostname",
    "helo rejected",
    "ehlo rejected",
    // Authentication and encryption.
    "spf",
    "dkim",
    "dmarc",
    "sender policy framework",
    "domainkeys",
    "authentication",
    "authenticate*",
    "unauthenticated",
    "authentification",
    "starttls",
    "tls required",
    "requires tls",
    "encryption required",
    "credentials",
    // The sender address.
    "sender address",
    "sender account",
    "sender unknown",
    "sender's domain",
    "originator",
    "verification failed for",
    "sender rejected",
    "sender domain",
    "sender verif*",
    "sender is",
    "sender was",
    "sender not",
    "sender denied",
    "sender blocked",
    "invalid sender",
    "bad sender",
    "unknown sender",
    "null sender",
    "empty envelope sender*",
    "envelope sender",
    "envelope from",
    "mail from:",
    "mail from <",
    "mail from command",
    "mail from address",
    "mail from domain",
    "return path",
    "return-path",
    "from address",
    "from domain",
    "not allowed to send",
    "not permitted to send",
    "not authorized to send",
    "batv",
];

/// The recipient's domain takes no mail at all.
const NULL_MX: &[&str] = &["domain does not accept mail", "null mx", "nullmx"];

/// This host takes no SMTP mail (RFC 5321 §3.1, RFC 7504).
const NO_SMTP: &[&str] = &[
    "no smtp service",
    "host does not accept mail",
    "does not accept smtp",
];

const FULL: &[&str] = &[
    "mailbox full",
    "mail box full",
    "account is full",
    "account full",
    "run out of space",
    "out of space",
    "over its size limit",
    "exceeds allowed size",
    "exceeds * size",
    "at capacity",
    "postfach voll",
    "postfach ist voll",
    "casella piena",
    "buzon lleno",
    "boite pleine",
    "mailbox is full",
    "mailbox * full",
    "inbox is full",
    "inbox full",
    "full mailbox",
    "mailfolder is full",
    "boite * pleine",
    "over quota",
    "overquota",
    "over * quota",
    "quota exceeded",
    "exceed* quota",
    "quota violation",
    "reached * quota",
    "quota usage",
    "disk quota",
    "diskspace quota",
    "out of storage",
    "storage space",
    "storage allocation",
    "not enough space",
    "not enough disk space",
    "insufficient disk space",
    "enough storage",
    "space has been used up",
    "exceed* maximum allowed storage",
    "mailbox size limit",
    "mailbox exceeded",
    "mailbox has exceeded",
    "too many messages in",
    "too many messages on",
];

const DISABLED: &[&str] = &[
    "disabled",
    "deactivated",
    "inactive",
    "suspended",
    "suspend",
    "discontinued",
    "terminated",
    "frozen",
    "archived",
    "locked",
    "account closed",
    "account has been closed",
    "mailbox closed",
    "account expired",
    "account has expired",
    "no longer accepts",
    "no longer active",
    "no longer in use",
    "no longer valid",
    "no longer available",
];

/// Qualifies a disabled mailbox as temporary.
const TEMPORARY: &[&str] = &["temporar*"];

const DOMAIN: &[&str] = &[
    "host unknown",
    "unknown host",
    "host not found",
    "host or domain name not found",
    "domain not found",
    "domain name not found",
    "no such domain",
    "unknown domain",
    "domain unknown",
    "domain does not exist",
    "domain doesn't exist",
    "domain must exist",
    "domain * is unknown",
    "unrouteable domain",
    "unroutable domain",
];

const NOT_FOUND: &[&str] = &[
    "user unknown",
    "unknown user",
    "userunknown",
    // Exim's words when no router accepts the address: at the domain's own server, its routers
    // know the domain but not the local part (the domain case is "Unrouteable domain").
    "unrouteable address",
    "unroutable address",
    // RFC 5321 §4.2.2's text for 553.
    "mailbox name not allowed",
    "unknown recipient",
    "recipient unknown",
    "address unknown",
    "unknown address",
    "unknown mailbox",
    "mailbox unknown",
    "unknown local part",
    "unknown local-part",
    "addressee unknown",
    "no such user",
    "no such mailbox",
    "no such recipient",
    "no such address",
    "no such account",
    "no such person",
    "no such local user",
    "no mailbox",
    "no one at this address",
    "no account by that name",
    "not a known user",
    "not a valid mailbox",
    "not a valid recipient",
    "not a valid user",
    "not a valid address",
    "invalid recipient",
    "invalid mailbox",
    "invalid user",
    "invalid address",
    "address invalid",
    "mailbox invalid",
    "recipient invalid",
    "user invalid",
    "bad address",
    "bad recipient",
    "bad destination",
    "user not found",
    "mailbox not found",
    "recipient not found",
    "address not found",
    "account not found",
    "email address could not be found",
    "not present in directory",
    "not listed in",
    "does not exist",
    "doesn't exist",
    "does not exists",
    "not exist",
    "no longer exists",
    "doesn't have an account",
    "does not have an account",
    "doesn't have a * account",
    "does not have a * account",
    "mailbox unavailable",
    "mailbox is unavailable",
    "mailbox not available",
    "mailbox is not available",
    "mailbox unavaiable",
    "recipient address rejected: access denied",
    "recipientnotfound",
    "recipnotfound",
    "recipient not local",
    "recipient is not local",
    "not a local address",
    "user not local",
    "not our customer",
    "badrcptto",
    "validrcptto",
    "destinataire invalide",
    "destinataire inconnu",
    "utilisateur inconnu",
    "n'existe pas",
    "no existe",
    "nessun utente",
    "unbekannt",
    "existiert nicht",
];

/// The receiving system failed on its own.
const SERVER: &[&str] = &[
    "local error",
    "local problem",
    "system error",
    "internal error",
    "server error",
    "temporary failure",
    "temporary error",
    "temporarily unavailable",
    "currently unavailable",
    "queue file",
    "system storage",
    "out of memory",
    "no space left",
    "disk full",
    "mail system full",
    "configuration error",
    "config error",
    "misconfigured",
    "misconfiguration",
    "mail loop",
    "routing loop",
    "loop detected",
    "loops back",
    "looping",
    "forwarding loop",
    "too many hops",
    "hop count",
    "unable to route",
    "no route",
    "unreachable",
    "timeout",
    "timed out",
    "connection dropped",
    "connection reset",
    "lost connection",
    "shutting down",
    "not accepting network messages",
    "mailer error",
    "command died",
    "procmail",
    "maildrop",
    "overloaded",
];

/// A rule of the receiving side.
const POLICY: &[&str] = &[
    "policy",
    "policies",
    "prohibited",
    "not permitted",
    "not allowed",
    "not authorized",
    "unauthorized",
    "administrative",
    "relay",
    "relaying",
    "rcpthost*",
    "content",
    "virus",
    "malware",
    "phishing",
    "attachment*",
    "too large",
    "too big",
    "message size",
    "size limit",
    "size exceeds",
    "exceeds * size",
    "header*",
    "rfc 5322",
    "rfc5322",
    "rfc 2822",
    "rfc 822",
    "non-compliant",
    "noncompliant",
    "not compliant",
    "mailing list",
    "members only",
    "members-only",
    "only accept* mail from",
    "preferences",
    "user rules",
    "filtered",
    "filter",
    "refuse*",
    "denied",
];

/// In an X.7.x text, a word that points at the recipient rather than the prober.
const RECIPIENT: &[&str] = &["recipient*", "mailbox", "addressee", "rcpt"];

/// A user-unknown text specific enough to win over an X.7.x code (read only with no word of
/// policy; see `plain_user_unknown`).
const USER_UNKNOWN: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "no such recipient",
    "unknown recipient",
    "recipient unknown",
    "unknown mailbox",
    "mailbox unknown",
    "user not found",
    "mailbox not found",
    "recipient not found",
    "user does not exist",
    "mailbox does not exist",
    "recipient does not exist",
];

/// The domain's own server does not host the recipient's domain, in its MTA's own words.
const NOT_HOSTED: &[&str] = &[
    // Microsoft Exchange (5.7.54).
    "relay recipient in non-accepted domain",
    // qmail's qmail-smtpd and its patches (vpopmail's chkuser), with #5.7.1, #5.1.1 or #5.5.3.
    "domain isn't in my list of allowed rcpthosts",
];

/// A 4xx text that is a recipient-table miss (Postfix's wording), explained as such.
const TABLE_MISS: &[&str] = &[
    "user unknown in local recipient table",
    "user unknown in virtual mailbox table",
    "user unknown in virtual alias table",
    "user unknown in relay recipient table",
];

/// Keeps a mailbox verdict from being final (see step 7).
const POLICY_VETO: &[&str] = &[
    "policy",
    "policies",
    "prohibited",
    "not permitted",
    "not authorized",
    "unauthorized",
    "content",
    "virus",
    "malware",
    "phishing",
    "relay access",
    "relaying denied",
    "relay denied",
    "relay not permitted",
    "unable to relay",
];

const PROTOCOL: &[&str] = &[
    "syntax",
    "command not recognized",
    "unrecognized command",
    "command unrecognized",
    "unrecognised",
    "unknown command",
    "invalid command",
    "bad sequence",
    "out of sequence",
    "hello first",
    "helo first",
    "ehlo first",
    "not implemented",
    "line too long",
    "parameter*",
    "argument*",
    "pipelining",
];

/// Asking to come back (read on 450/451 X.7.x replies).
const RETRY_LATER: &[&str] = &[
    "try again later",
    "try later",
    "retry later",
    "try again in",
    "please retry",
    "please try again",
    "come back later",
];

/// Lower case, curly apostrophes straightened, runs of blanks as one space.
/// Whether the text holds an RFC 3463 code of subject 7 ("5.7.1", "4.7.0 …") as a word.
fn mentions_policy_code(text: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == ',' || c == ';')
        .any(|w| {
            let mut parts = w.trim_end_matches(['.', ':', ')', ']']).split('.');
            matches!(
                (parts.next(), parts.next(), parts.next(), parts.next()),
                (Some("4" | "5"), Some("7"), Some(d), None) if !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit())
            )
        })
}

fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            match c {
                '\u{2019}' | '\u{2018}' => out.push('\''),
                // Fold accents so one pattern matches "boîte pleine" and "boite pleine".
                'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => {
                    out.push('a')
                }
                'ç' | 'Ç' => out.push('c'),
                'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => out.push('e'),
                'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => out.push('i'),
                'ñ' | 'Ñ' => out.push('n'),
                'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => {
                    out.push('o')
                }
                'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => out.push('u'),
                'ß' => out.push_str("ss"),
                c => out.extend(c.to_lowercase()),
            }
        }
    }
    out
}

fn has(text: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| matches(text, p))
}

/// Whether `pattern` occurs in `text`: its `*`-separated pieces in order, each piece's outer
/// letter or digit on a word boundary unless the piece touches a `*`.
fn matches(text: &str, pattern: &str) -> bool {
    let pieces = pattern.split('*').count();
    let mut from = 0;
    for (i, piece) in pattern.split('*').enumerate() {
        if piece.is_empty() {
            continue;
        }
        match find_piece(text, from, piece, i == 0, i + 1 == pieces) {
            Some(end) => from = end,
            None => return false,
        }
    }
    true
}

/// The end of the first occurrence of `piece` at or after `from` that sits on the required
/// word boundaries.
fn find_piece(
    text: &str,
    from: usize,
    piece: &str,
    bound_start: bool,
    bound_end: bool,
) -> Option<usize> {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let check_start = bound_start && word(piece.chars().next());
    let check_end = bound_end && word(piece.chars().next_back());
    let mut at = from;
    while let Some(offset) = text[at..].find(piece) {
        let start = at + offset;
        let end = start + piece.len();
        let start_ok = !check_start || !word(text[..start].chars().next_back());
        let end_ok = !check_end || !word(text[end..].chars().next());
        if start_ok && end_ok {
            return Some(end);
        }
        at = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Reply {
        Reply::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn decode(text: &str) -> Decoding {
        classify(&parse(text))
    }

    #[track_caller]
    fn assert_decodes(text: &str, reason: Reason) {
        let d = decode(text);
        assert_eq!(d.reason, reason, "{text:?}: {}", d.explanation);
        assert_eq!(d.status, reason.status(), "{text:?}");
        assert_eq!(d.action, reason.action(), "{text:?}");
        assert!(!d.explanation.is_empty());
    }

    // --- parsing ---

    #[test]
    fn parses_a_single_line() {
        let r = parse("550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown");
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced, Some(EnhancedCode::new(5, 1, 1)));
        assert_eq!(
            r.text,
            "<ann@example.com>: Recipient address rejected: User unknown"
        );
        assert_eq!(parse("250 2.1.5 Ok").to_string(), "250 2.1.5 Ok");
    }

    #[test]
    fn parses_multi_line_replies() {
        let gmail = "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n\
                     550-5.1.1 double-checking the recipient's email address for typos or\r\n\
                     550 5.1.1 unnecessary spaces. - gsmtp\r\n";
        let r = parse(gmail);
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced, Some(EnhancedCode::new(5, 1, 1)));
        assert_eq!(
            r.text,
            "The email account that you tried to reach does not exist. Please try \
             double-checking the recipient's email address for typos or unnecessary spaces. - gsmtp"
        );
        // LF alone, a lone CR, blank lines and surrounding blanks are all fine.
        assert_eq!(parse(&gmail.replace("\r\n", "\n")), r);
        assert_eq!(parse(&gmail.replace("\r\n", "\r")), r);
        assert_eq!(
            parse(&format!("\n\n  {}\n\n", gmail.replace("\r\n", "\n\n"))),
            r
        );
        assert_eq!(
            parse("550 5.7.0, denied").enhanced,
            Some(EnhancedCode::new(5, 7, 0))
        );
        assert_eq!(parse("550 5.1.1: nope").text, "nope");
        // qmail's "#5.1.1".
        let r = parse("550 #5.1.0 Address rejected.");
        assert_eq!(
            (r.enhanced, r.text.as_str()),
            (Some(EnhancedCode::new(5, 1, 0)), "Address rejected.")
        );
        // A later line's different enhanced code stays in the text.
        assert_eq!(parse("550-5.7.1 a\n550 5.7.26 b").text, "a 5.7.26 b");
        // Without one on the first line, later lines keep theirs too.
        let r = parse("550-Please turn on SMTP Authentication\n550 5.7.1 in your client");
        assert_eq!(
            (r.enhanced, r.text.as_str()),
            (
                None,
                "Please turn on SMTP Authentication 5.7.1 in your client"
            )
        );
    }

    #[test]
    fn parses_odd_but_real_forms() {
        // Missing enhanced code.
        let r = parse("554 delivery error: dd This user doesn't have an account");
        assert_eq!((r.code, r.enhanced), (554, None));
        assert_eq!(
            r.text,
            "delivery error: dd This user doesn't have an account"
        );
        // The non-standard "550:" form.
        let r = parse("550: 5.1.1 <a@example.jp>... User Unknown");
        assert_eq!(
            (r.code, r.enhanced),
            (550, Some(EnhancedCode::new(5, 1, 1)))
        );
        assert_eq!(r.text, "<a@example.jp>... User Unknown");
        assert_eq!(parse("550: : User unknown").text, ": User unknown");
        // A code alone, a tab separator, a three-digit subject and detail.
        assert_eq!(parse("421").text, "");
        assert_eq!(parse("550\tno").text, "no");
        assert_eq!(
            parse("550 5.1.10 RESOLVER.ADR.RecipientNotFound").enhanced,
            Some(EnhancedCode::new(5, 1, 10))
        );
        assert_eq!(
            parse("550 5.7.606 Access denied")
                .enhanced
                .map(|e| e.to_string()),
            Some("5.7.606".into())
        );
        // A reply cut short after a continuation line.
        let r = parse("550-5.2.1 The email account that you tried to reach is inactive. For more");
        assert_eq!(
            (r.code, r.enhanced),
            (550, Some(EnhancedCode::new(5, 2, 1)))
        );
        // Things that only look like enhanced codes stay in the text.
        for text in [
            "550 192.0.2.1 blocked",
            "550 5.1 x",
            "550 6.1.1 x",
            "550 5.1.1000 x",
            "550 5.1.1.1 x",
            "550 5.1.1,, x",
        ] {
            assert_eq!(parse(text).enhanced, None, "{text}");
        }
        // Non-ASCII text is kept.
        assert_eq!(
            parse("550 5.1.1 Utilisateur inconnu — désolé").text,
            "Utilisateur inconnu — désolé"
        );
    }

    #[test]
    fn refuses_what_is_not_one_reply() {
        use ReplyError::*;
        let cases: [(&str, ReplyError); 12] = [
            ("", Empty),
            (" \r\n\n ", Empty),
            ("hello world", NoCode { line: 1 }),
            ("55 x", NoCode { line: 1 }),
            ("x550 no", NoCode { line: 1 }),
            (
                "5.2.2 <a@example.jp>... Mailbox Full",
                EnhancedWithoutCode {
                    line: 1,
                    code: EnhancedCode::new(5, 2, 2),
                },
            ),
            ("650 5.1.1 x", CodeOutOfRange { line: 1, code: 650 }),
            ("150 x", CodeOutOfRange { line: 1, code: 150 }),
            (
                "5501 x",
                BadSeparator {
                    line: 1,
                    code: 550,
                    found: '1',
                },
            ),
            (
                "220-laposte\n421 4.2.1 Service refuse",
                MixedCodes {
                    line: 2,
                    first: 220,
                    found: 421,
                },
            ),
            (
                "354 End data with <CR><LF>.<CR><LF>\n451 4.3.0 Error: queue file write error",
                AfterLastLine { line: 2, code: 354 },
            ),
            ("550-5.1.1 a\nnot a reply line", NoCode { line: 2 }),
        ];
        for (text, error) in cases {
            assert_eq!(Reply::parse(text), Err(error.clone()), "{text:?}");
            assert!(!error.to_string().is_empty());
        }
        assert!(
            EnhancedWithoutCode {
                line: 1,
                code: EnhancedCode::new(5, 2, 2)
            }
            .to_string()
            .contains("550 5.2.2")
        );
    }

    #[test]
    fn garbage_never_panics() {
        let samples = [
            "\u{0}\u{1}\u{2}",
            "５５０ 5.1.1 full-width digits",
            "550é",
            "55",
            "5",
            "550-",
            "550-\n550",
            "550 5.",
            "550 5.1.",
            "550 .1.1",
            "999 x",
            "000",
            "\u{feff}550 x",
            "550 \u{2028} x",
            "🙂🙂🙂🙂",
            "550-5.1.1 x\r\n550-5.1.1\r\n",
        ];
        for s in samples {
            if let Ok(r) = Reply::parse(s) {
                let _ = classify(&r);
            }
        }
        // Every prefix of a realistic reply, cut at every character.
        let long = "550-5.7.1 [192.0.2.1] Blocked using zen.spamhaus.org\r\n550 5.7.1 ça suffit";
        for (i, _) in long.char_indices() {
            if let Ok(r) = Reply::parse(&long[..i]) {
                let _ = classify(&r);
            }
        }
    }

    // --- reason codes ---

    #[test]
    fn reason_codes_are_stable_kebab_case() {
        let codes: Vec<&str> = Reason::FROM_REPLIES.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "mailbox-accepted",
                "mailbox-not-found",
                "mailbox-disabled",
                "no-such-domain",
                "mailbox-full",
                "greylisted",
                "deferred",
                "rate-limited",
                "prober-blocked",
                "policy-rejected",
                "server-error",
                "protocol-error",
                "unrecognized",
                "smtp-unreachable",
                "smtp-timeout",
            ]
        );
        for r in Reason::FROM_REPLIES {
            assert_eq!(Reason::from_code(r.as_str()), Some(r));
            assert_eq!(r.to_string(), r.as_str());
            assert_ne!(r.status(), Status::CatchAll);
            // Suppress exactly when invalid; keep exactly when valid.
            assert_eq!(
                r.action() == Action::Suppress,
                r.status() == Status::Invalid,
                "{r}"
            );
            assert_eq!(
                r.action() == Action::Keep,
                r.status() == Status::Valid,
                "{r}"
            );
        }
    }

    // --- classification ---

    #[test]
    fn the_issue_examples() {
        use Reason::*;
        assert_decodes("550 5.1.1", MailboxNotFound);
        assert_decodes(
            "550 5.5.0 Requested action not taken: mailbox unavailable",
            MailboxNotFound,
        );
        assert_decodes(
            "554 delivery error: dd This user doesn't have an account",
            MailboxNotFound,
        );
        assert_decodes(
            "554 delivery error: dd This user doesn\u{2019}t have a yahoo.com account (ann@yahoo.com) [0] - mta1.mail.yahoo.com",
            MailboxNotFound,
        );
        assert_decodes(
            "450 4.2.0 <ann@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html",
            Greylisted,
        );
        assert_decodes(
            "552 5.2.2 <ann@example.com>: user is over quota",
            MailboxFull,
        );
        assert_decodes(
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            ProberBlocked,
        );
        assert_decodes("421 4.7.0 too many errors", RateLimited);
        assert_decodes("550 5.7.1 recipient rejected by policy", PolicyRejected);
        assert_decodes("250 2.1.5 Ok", MailboxAccepted);
    }

    #[test]
    fn permanence_is_the_reply_codes_claim() {
        assert_eq!(decode("250 2.1.5 Ok").permanence, None);
        assert_eq!(decode("550 5.1.1 x").permanence, Some(Permanence::Hard));
        let full = decode("552 5.2.2 over quota");
        assert_eq!(
            (full.permanence, full.status),
            (Some(Permanence::Hard), Status::Unknown)
        );
        assert_eq!(
            decode("452 4.2.2 over quota").permanence,
            Some(Permanence::Soft)
        );
        assert_eq!(Permanence::Hard.as_str(), "hard");
        assert_eq!(Permanence::Soft.as_str(), "soft");
    }

    #[test]
    fn accepted_and_other_positive_replies() {
        use Reason::*;
        assert_decodes("250 OK", MailboxAccepted);
        assert_decodes(
            "251 User not local; will forward to <a@b.example>",
            MailboxAccepted,
        );
        // Not answers to RCPT.
        assert_decodes("252 2.1.5 Cannot VRFY user", ProtocolError);
        assert_decodes("220 mx.example.com ESMTP", ProtocolError);
        assert_decodes("354 End data with <CR><LF>.<CR><LF>", ProtocolError);
        // The reply code decides, whatever the enhanced code says.
        assert_decodes("250 5.1.1 odd", MailboxAccepted);
    }

    #[test]
    fn mailbox_not_found() {
        use Reason::*;
        for text in [
            "550 5.1.1 <ann@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
            "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550 5.1.1 double-checking",
            "550 5.1.0 Address rejected",
            "553 5.1.3 Bad recipient address syntax",
            "550 5.1.6 Mailbox has moved",
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
            "550 No such user here",
            "550 <ann@example.com>: User unknown",
            "550: : User unknown",
            "550 Invalid recipient <ann@example.com>",
            "550 sorry, no mailbox here by that name",
            "553 sorry, that user doesn't exist",
            "551 User not local; please try <ann@elsewhere.example>",
            "550 5.0.0 Utilisateur inconnu",
            "550 Requested action not taken: mailbox unavailable",
        ] {
            assert_decodes(text, MailboxNotFound);
        }
    }

    #[test]
    fn mailbox_disabled() {
        use Reason::*;
        for text in [
            "550 5.2.1 The email account that you tried to reach is disabled.",
            "550 5.2.1 <ann@example.com>: mailbox unavailable",
            "550 Mailbox disabled for this recipient",
            "550 5.0.0 This account has been suspended",
            "554 invalid/inactive user",
        ] {
            assert_decodes(text, MailboxDisabled);
        }
        // Temporarily disabled is not final.
        assert_decodes("550 5.2.1 mailbox temporarily disabled", Deferred);
        assert_decodes("550 This account has been temporarily suspended", Deferred);
    }

    #[test]
    fn no_such_domain() {
        use Reason::*;
        for text in [
            "550 5.1.2 <ann@nowhere.example>: Recipient address rejected: Domain not found",
            "554 5.1.2 Host unknown",
            "556 5.1.10 Recipient address has null MX",
            "550 5.1.10 Recipient domain has a null MX",
            "550 Host or domain name not found",
            "553 5.3.0 domain does not accept mail (nullmx)",
        ] {
            assert_decodes(text, NoSuchDomain);
        }
    }

    #[test]
    fn temporary_mailbox_answers_are_never_invalid() {
        use Reason::*;
        for text in [
            "450 4.1.1 <ann@example.com>: Recipient address rejected: unverified address",
            "450 4.1.2 <ann@nowhere.example>: Recipient address rejected: Domain not found",
            "450 4.2.1 mailbox temporarily disabled",
            "450 User unknown",
            "452 No such user",
            "471 something odd",
        ] {
            assert_decodes(text, Deferred);
        }
    }

    #[test]
    fn mailbox_full_is_unknown_even_when_permanent() {
        use Reason::*;
        for text in [
            "552 5.2.2 <ann@example.com>: user is over quota",
            "452 4.2.2 The email account that you tried to reach is over quota.",
            "552-5.2.2 The recipient's inbox is out of storage space and inactive. Please\n552 5.2.2 direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm",
            "550 Mailbox is full",
            "554 5.0.0 quota exceeded",
            "552 5.1.1 Boite du destinataire pleine.",
            "550 5.1.1 <ann@example.com>: mailbox full",
            "552 Requested mail action aborted: exceeded storage allocation",
            "552",
        ] {
            // Even against an X.1.1 code: a full mailbox exists (step 7).
            let d = decode(text);
            assert_eq!(d.reason, MailboxFull, "{text}: {}", d.explanation);
            assert_eq!(d.status, Status::Unknown);
            assert_eq!(d.action, Action::RetryLater);
        }
    }

    #[test]
    fn greylisted() {
        use Reason::*;
        for text in [
            "450 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/example.com.html",
            "451 4.7.1 Greylisting in action, please come back later",
            "451 4.7.1 Please try again later",
            "450 4.7.1 Client host rejected: greylisted",
            "451 Temporary local problem",
            "450 Requested mail action not taken: mailbox unavailable",
            "451",
        ] {
            let d = decode(text);
            // Two of these read as a server error or a deferral on the text; that is fine too.
            assert!(
                matches!(d.reason, Greylisted | ServerError | Deferred),
                "{text}: {:?}",
                d.reason
            );
            assert_eq!(d.status, Status::Unknown);
        }
        assert_decodes("451 4.7.1 Please try again later", Greylisted);
        assert_decodes("450 4.2.0 Greylisted", Greylisted);
        assert_decodes("451", Greylisted);
        // A 5xx never reads as greylisting.
        assert_ne!(decode("550 greylisted forever").reason, Greylisted);
    }

    #[test]
    fn rate_limited() {
        use Reason::*;
        for text in [
            "421 4.7.0 too many errors",
            "421 4.7.0 Try again later, closing connection.",
            "421 Service not available, closing transmission channel",
            "421",
            "452 4.5.3 Too many recipients",
            "550 5.5.3 Too many recipients",
            "450 4.7.1 Too many connections from your host",
            "550-5.2.1 The user you are trying to contact is receiving mail at a rate that\n550 5.2.1 prevents additional messages from being delivered.",
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints",
            "421 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.",
            "550 Connection frequency limited",
            "454 Throttling failure: Maximum sending rate exceeded.",
        ] {
            assert_decodes(text, RateLimited);
        }
    }

    #[test]
    fn prober_blocked_is_never_invalid() {
        use Reason::*;
        for text in [
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "550 5.7.1 Mail from 192.0.2.1 refused, see https://www.spamcop.net/bl.shtml",
            "521-5.7.1 Service unavailable; client [203.0.113.225] blocked using dnsbl.sorbs.net\n521 5.7.1 Please see http://example.com",
            "550-5.7.25 [192.0.2.202] The IP address sending this message does not have a\n550 5.7.25 PTR record setup",
            "550-5.7.26 Unauthenticated email from example.com is not accepted due to\n550 5.7.26 domain's DMARC policy.",
            "550 5.7.23 SPF validation failed",
            "550 5.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]",
            "554 5.7.1 Your IP address is listed at bl.example.net",
            "550 5.1.8 <x@sender.example>: Sender address rejected: Domain not found",
            "501: 5.1.8 Sender address rejected",
            "553 5.1.7 The sender address is invalid",
            "530 5.7.0 Must issue a STARTTLS command first",
            "535 5.7.8 Authentication credentials invalid",
            "530 Authentication required",
            "550 5.7.606 Access denied, banned sending IP [192.0.2.1]",
            "554 5.7.1 rejected: poor reputation",
            "550 5.7.0",
            "554 5.7.1",
            "550 Messages from dynamic IPs are not accepted",
            "550 5.1.1 user unknown, but also you are listed on spamhaus",
            "554 Sorry, your remotehost looks suspiciously like spammer",
            "550 5.7.1 Message rejected as spam by Content Filtering.",
            "550 High probability of spam",
            "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname",
            "550 Mail sending denied: the sender account is disabled",
        ] {
            let d = decode(text);
            assert_eq!(d.reason, ProberBlocked, "{text}: {}", d.explanation);
            assert_eq!(d.action, Action::FixSendingSetup, "{text}");
            assert_eq!(d.status, Status::Unknown, "{text}");
        }
    }

    #[test]
    fn policy_rejected() {
        use Reason::*;
        for text in [
            "550 5.7.1 recipient rejected by policy",
            "550 5.7.1 The user or domain that you are sending to (or from) has a policy that prohibited the mail that you sent",
            "554 5.7.1 <ann@example.com>: Relay access denied",
            "550 5.7.1 Unable to relay",
            "554 5.7.1 <ann@example.com>: Recipient address rejected: Access denied",
            "552 5.3.4 Message size exceeds fixed limit",
            "552 5.2.3 Message length exceeds administrative limit",
            "554 5.6.0 Message contains invalid header",
            "550 Message rejected because of unacceptable content",
            "550 5.7.2 members-only list",
            "550 5.1.1 <ann@example.com> rejected by local policy",
            "550 5.0.0 Recipient is only accepting mail from specific email addresses",
        ] {
            assert_decodes(text, PolicyRejected);
        }
    }

    #[test]
    fn issue_16_rules() {
        use Reason::*;
        // A plain user-unknown text wins over an X.7.x code; a policy word keeps X.7's reading.
        assert_decodes("550 5.7.1 User unknown", MailboxNotFound);
        assert_decodes(
            "550 5.7.1 <a@example.fr>: Recipient address rejected: User unknown",
            MailboxNotFound,
        );
        assert_decodes("450 4.7.1 <a@example.fr>: User unknown", Deferred);
        for text in [
            "550 5.7.1 User unknown or access denied",
            "550 5.7.1 user unknown (policy)",
            "550 5.7.1 User unknown, relaying denied",
        ] {
            assert_decodes(text, PolicyRejected);
        }
        assert_decodes(
            "550 5.7.1 User unknown, you are listed on spamhaus",
            ProberBlocked,
        );
        // RFC 5321's texts for 550 and 553.
        assert_decodes(
            "550 Requested action not taken: mailbox unavailable",
            MailboxNotFound,
        );
        assert_decodes(
            "553 Requested action not taken: mailbox name not allowed",
            MailboxNotFound,
        );
        // The domain's own server does not host the domain; a bare relay refusal does not say so.
        for text in [
            "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
            "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            "553 sorry, that domain isn't in my list of allowed rcpthosts",
        ] {
            assert_decodes(text, NoSuchDomain);
        }
        assert_decodes(
            "451 4.7.54 Unable to relay recipient in non-accepted domain",
            Deferred,
        );
        for text in [
            "554 5.7.1 <ann@example.com>: Relay access denied",
            "550 relaying denied",
            "550 relay not permitted",
            "550 5.7.64 TenantAttribution; Relay Access Denied",
        ] {
            assert_decodes(text, PolicyRejected);
        }
        // A 4xx recipient-table miss stays a deferral, with its own explanation.
        let d = decode(
            "450 4.1.1 <a@b.example>: Recipient address rejected: User unknown in local recipient table",
        );
        assert_eq!(d.reason, Deferred);
        assert_eq!(d.status, Status::Unknown);
        assert!(
            d.explanation.contains("recipient-table miss"),
            "{}",
            d.explanation
        );
        // Exim's routing failure names the address; its domain failure names the domain.
        assert_decodes("550 Unrouteable address", MailboxNotFound);
        assert_decodes("550 Unrouteable domain", NoSuchDomain);
        // 500-504 are protocol matters, whatever enhanced code or text they carry.
        for text in [
            "501 5.1.3 Bad recipient address syntax",
            "501 5.1.3 <a@b.example>: Recipient address rejected: Bad destination mailbox address syntax",
            "501 Bad address syntax",
        ] {
            assert_decodes(text, ProtocolError);
        }
        assert_decodes("500 No such user", MailboxNotFound);
        assert_decodes("553 5.1.3 Bad recipient address syntax", MailboxNotFound);
    }

    #[test]
    fn server_and_protocol_errors() {
        use Reason::*;
        for text in [
            "451 4.3.0 Error: queue file write error",
            "452 4.3.1 Insufficient system storage",
            "421 4.3.2 System not accepting network messages",
            "452",
            "554 5.4.6 Hop count exceeded - possible mail loop",
            "550 5.4.4 Unable to route",
            "451 4.4.1 No answer from host",
            "554 5.3.0 mail system configuration error",
            "550 Mailer error: command died with status 75",
            "554 Transaction failed: local error in processing",
        ] {
            assert_decodes(text, ServerError);
        }
        for text in [
            "500 5.5.1 Command unrecognized",
            "501 5.5.4 Syntax error in parameters or arguments",
            "503 5.5.1 Bad sequence of commands",
            "502",
            "555 5.5.4 Unsupported option",
            "550 5.5.2 Syntax error",
        ] {
            assert_decodes(text, ProtocolError);
        }
    }

    #[test]
    fn unreachable_timeout_and_unrecognized() {
        use Reason::*;
        assert_decodes("554 No SMTP service here", SmtpUnreachable);
        assert_decodes(
            "521 5.3.2 mx.example.com does not accept mail",
            SmtpUnreachable,
        );
        assert_decodes("521", SmtpUnreachable);
        for text in [
            "550",
            "550 Rejected",
            "554 5.0.0 Transaction failed",
            "553",
            "599 what",
        ] {
            assert_decodes(text, Unrecognized);
        }
        let d = Decoding::unreachable();
        assert_eq!(
            (d.reason, d.status, d.permanence),
            (SmtpUnreachable, Status::Unknown, None)
        );
        let d = Decoding::timeout();
        assert_eq!((d.reason, d.action), (SmtpTimeout, Action::RetryLater));
    }

    #[test]
    fn enhanced_code_of_another_class_is_ignored() {
        use Reason::*;
        // 4.2.2 on a 550: the reply code rules, the text decides.
        assert_decodes("550 4.2.2 Mailbox full", MailboxFull);
        assert_decodes("550 4.1.1 User unknown", MailboxNotFound);
        // 5.1.1 on a 450: still only a deferral.
        assert_decodes("450 5.1.1 User unknown", Deferred);
        // And without a text, the reply code alone.
        assert_decodes("550 2.0.0", Unrecognized);
    }

    #[test]
    fn specific_enhanced_codes_beat_generic_texts() {
        use Reason::*;
        assert_decodes("550 5.2.2 mailbox unavailable", MailboxFull);
        assert_decodes("550 5.1.1 Requested action not taken", MailboxNotFound);
        assert_decodes("550 5.2.1 Requested action not taken", MailboxDisabled);
        // …but not texts that blame the prober.
        assert_decodes(
            "550 5.1.1 blocked: your IP is on our blocklist",
            ProberBlocked,
        );
    }

    #[test]
    fn text_patterns_are_case_insensitive_and_word_bounded() {
        use Reason::*;
        assert_decodes("550 USER UNKNOWN", MailboxNotFound);
        assert_decodes("550 uSeR   unKnOwN", MailboxNotFound);
        // Wrapped over two lines.
        assert_decodes("550-The user\n550 unknown", MailboxNotFound);
        // "rbl" inside a word, "spf" inside a word: no match.
        assert!(!matches("the herbly team", "rbl"));
        assert!(matches("listed in an rbl.", "rbl"));
        assert!(!matches("spfoo", "spf"));
        assert!(matches("spf check: fail", "spf"));
        // Prefix and gap patterns.
        assert!(matches("we are throttling you", "throttl*"));
        assert!(matches("mailbox is currently full", "mailbox * full"));
        assert!(!matches("full mailbox", "mailbox * full"));
        assert!(matches("exceeded your quota", "exceed* quota"));
        assert!(matches("exceeds the quota", "exceed* quota"));
        // Non-ASCII text around a match.
        assert!(matches("é user unknown é", "user unknown"));
        assert!(!matches("éuser unknown", "user unknown"));
        assert_eq!(normalize("Doesn\u{2019}t  HAVE\n\ta"), "doesn't have a");
    }

    #[test]
    fn explain_json() {
        let e = explain("550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 - gsmtp")
            .unwrap();
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "code": 550,
                "enhanced": "5.1.1",
                "text": "The email account that you tried to reach does not exist. - gsmtp",
                "permanence": "hard",
                "reason": "mailbox-not-found",
                "status": "invalid",
                "action": "suppress",
                "advice": Action::Suppress.advice(),
                "explanation": e.explanation,
            })
        );
        let json = serde_json::to_value(explain("250 OK").unwrap()).unwrap();
        assert_eq!(json["enhanced"], serde_json::Value::Null);
        assert_eq!(json["permanence"], serde_json::Value::Null);
        assert_eq!(json["status"], "valid");
        assert_eq!(json["action"], "keep");
        let json =
            serde_json::to_value(explain("554 5.7.1 blocked using zen.spamhaus.org").unwrap())
                .unwrap();
        assert_eq!(json["action"], "fix-sending-setup");
        assert_eq!(json["status"], "unknown");
        let json = serde_json::to_value(explain("451 4.7.1 try again later").unwrap()).unwrap();
        assert_eq!(
            (json["action"].as_str(), json["permanence"].as_str()),
            (Some("retry-later"), Some("soft"))
        );
        // Decoding itself serialises too (the probe may log it).
        let json = serde_json::to_value(Decoding::timeout()).unwrap();
        assert_eq!(json["reason"], "smtp-timeout");
        assert!(explain("garbage").is_err());
    }

    #[test]
    fn review_cases_are_never_invalid() {
        for text in [
            "550 5.1.1 Boîte du destinataire pleine.",
            "550 5.1.1 mail box full",
            "550 5.1.1 account is full",
            "550 5.1.1 The recipient mailbox has run out of space",
            "550 5.1.1 mailbox is over its size limit",
            "550 5.1.1 User mailbox exceeds allowed size",
            "550 5.1.1 The user's mailbox is at capacity",
            "550 5.1.1 <x@y>: Postfach voll",
            "550 5.1.1 <x@y>: Casella piena",
            "550 5.1.1 <x@y>: buzón lleno",
            "550 5.1.1 <s@prober.example>: Sender unknown",
            "550 Sender's domain does not exist",
            "550 5.1.0 Originator address unknown",
            "550 Verification failed for <s@prober.example>: No Such User Here",
            "550-Requested action not taken: mailbox unavailable\n550 5.7.1 see https://x",
            "550 4.7.1 Recipient address rejected: Access denied",
        ] {
            let d = classify(&Reply::parse(text).unwrap());
            assert_ne!(d.status, Status::Invalid, "{text}: {d:?}");
        }
        assert!(mentions_policy_code("see 5.7.1 here"));
        assert!(!mentions_policy_code("version 5.7.12345 or 15.7.1"));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any code, any enhanced code (even one of another class) and any text decode to
        /// something: the decoder never panics on what a server makes up.
        #[test]
        fn any_reply_decodes(
            code in 200u16..600,
            enhanced in proptest::option::of((prop_oneof![Just(2u8), Just(4), Just(5)], 0u16..1000, 0u16..1000)),
            text in "[ -~\u{e9}\u{2028}]{0,80}",
        ) {
            let reply = Reply {
                code,
                enhanced: enhanced.map(|(c, s, d)| EnhancedCode::new(c, s, d)),
                text,
            };
            let _ = classify(&reply);
            let _ = ExplainedReply::new(&reply);
            let _ = explain(&reply.to_string());
        }
    }
}
