//! The cache policy: does a stored verdict answer a row of this run? Pure rules over what the
//! store holds; the pipeline's cache stage reads the store and asks them.

use std::sync::Arc;
use std::time::Duration;

use crate::model::stored::{DecidedUnder, Previous, Prior, StoredDomain};
use crate::model::{Level, Status};

/// Unknown verdicts (timeouts, greylisting, unreachable servers…) are reused for at most this
/// long: long enough that a resumed run does not ask again at once, short enough that the next
/// real run does.
pub const UNKNOWN_MAX_AGE: Duration = Duration::from_secs(3600);
/// A domain's verdicts (its MX result at level dns, its catch-all verdict) are reused for at most
/// this long (and never beyond --max-age).
pub const DOMAIN_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

/// Which stored verdicts a run may reuse.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    pub level: Level,
    pub now: i64,
    pub max_age: i64,
    /// --fresh: only the verdicts of this run (or of the interrupted run it resumes), by its
    /// id. By id and not by time: a run of the same second wrote the others.
    pub fresh: Option<i64>,
    /// A distributed job's run (`StoreOptions::job_run`): its own verdicts answer it whatever
    /// their age, as the workers decided them for this job (an unknown an hour old is still
    /// the job's answer when it is collected).
    pub job_run: Option<i64>,
    /// The options this run decides under (and at level smtp, its sender).
    pub under: DecidedUnder,
}

impl CachePolicy {
    /// An smtp-level verdict serves a dns-level run; a dns-level one does not serve an smtp run.
    /// A dns-level verdict is a domain's (its MX result), which has the shorter domain age.
    /// Only a verdict decided under this run's options serves it (see [`Self::same_options`]).
    pub fn serves(&self, p: &Prior) -> bool {
        if self.job_run.is_some() && p.run == self.job_run {
            return p.level >= self.level && self.same_options(&p.under);
        }
        let mut max_age = self.max_age;
        if p.level == Level::Dns {
            max_age = max_age.min(DOMAIN_MAX_AGE.as_secs() as i64);
        }
        if p.reason.status() == Status::Unknown {
            max_age = max_age.min(UNKNOWN_MAX_AGE.as_secs() as i64);
        }
        p.level >= self.level
            && self.fresh.is_none_or(|run| p.run == Some(run))
            && self.within(p.verified_at, max_age)
            && self.same_options(&p.under)
    }

    /// Whether something verified at `verified_at` is at most `max_age` old.
    pub fn within(&self, verified_at: i64, max_age: i64) -> bool {
        self.now - verified_at <= max_age
    }

    /// Whether a verdict decided under `under` is the one this run would decide: the same
    /// options (the rule is equality: which verdicts an option could not have changed is not
    /// provable from what is stored), and at level smtp the same sender. A run that sends
    /// nothing (level dns) does not care who sent; an smtp verdict stored before senders were
    /// recorded is presumed this run's sender's, as its options are presumed the defaults —
    /// else upgrading would throw away every stored probe, the one thing costly to redo.
    pub fn same_options(&self, under: &DecidedUnder) -> bool {
        under.allow_private_mx == self.under.allow_private_mx
            && match (&self.under.sender, &under.sender) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            }
    }
}

/// What the store knows of a domain, read once a run (level dns).
#[derive(Debug, Clone, Default)]
pub struct DomainState {
    /// Its latest verdict, young enough to serve or not.
    pub verdict: Option<Arc<Prior>>,
    /// The verdict serves this run (worked out once: the rows need not read it).
    pub serving: bool,
    /// The verdict answers its addresses without a look at their own rows: it serves, none
    /// of its addresses has an smtp-level verdict young enough to serve (those say more than
    /// the domain's), and an earlier run wrote it (a resumed run answers as the interrupted
    /// one did, and keeps the history its addresses' own rows hold).
    pub answers_alone: bool,
}

impl DomainState {
    /// A domain the store knows nothing of (and every domain at level smtp, where a domain's
    /// verdict answers no address).
    pub const NOTHING: &DomainState = &DomainState {
        verdict: None,
        serving: false,
        answers_alone: false,
    };

    /// `run`: this run's id; the verdicts it wrote are this (resumed) run's own.
    pub fn of(stored: StoredDomain, policy: &CachePolicy, run: i64) -> Self {
        let serving = stored.verdict.as_ref().is_some_and(|p| policy.serves(p));
        let smtp = stored
            .smtp_at
            .is_some_and(|at| policy.within(at, policy.max_age));
        let earlier = stored.verdict.as_ref().is_some_and(|p| p.run != Some(run));
        DomainState {
            verdict: stored.verdict.map(Arc::new),
            serving,
            answers_alone: serving && !smtp && earlier,
        }
    }

    /// The verdict, if it answers the domain's addresses alone: then the check threads (or,
    /// for a domain looked up one by one, the store stage) answer them without their own rows.
    pub fn lone_answer(&self) -> Option<&Arc<Prior>> {
        self.verdict.as_ref().filter(|_| self.answers_alone)
    }

    /// Whether a row at this domain needs its address's own stored verdict: it may say more
    /// than the domain's (an smtp-level one, this resumed run's own, or the history of an
    /// address verified again, for changes.csv).
    pub fn needs_own_verdict(&self) -> bool {
        self.lone_answer().is_none()
    }
}

/// The verdict a row compares with (changes.csv) when it is verified in this run, given its
/// stored one: that one, or if this (resumed) run wrote it already, the one that it replaced.
pub fn replaced(own: &Prior, run: i64) -> Option<Box<Previous>> {
    if own.run == Some(run) {
        own.previous.clone().map(Box::new)
    } else {
        Some(Box::new(Previous {
            status: own.reason.status(),
            reason: own.reason,
            verified_at: own.verified_at,
        }))
    }
}

/// The store's answer for one row the check threads left open.
#[derive(Debug, Default)]
pub struct RowAnswer {
    /// The stored verdict that answers the row (it skips the network), if any.
    pub verdict: Option<Arc<Prior>>,
    /// The verdict the row's new one is compared with in changes.csv, if any.
    pub previous: Option<Box<Previous>>,
}

/// Whether a stored verdict answers a row, given what the store knows of its domain and its
/// address's own verdict (`own`: read only when [`DomainState::needs_own_verdict`]).
/// `run`: this run's id; the verdicts it wrote are this (resumed) run's own.
pub fn answer_row(
    policy: &CachePolicy,
    domain: &DomainState,
    own: Option<Prior>,
    run: i64,
) -> RowAnswer {
    let this_run = |p: &Prior| p.run == Some(run);
    let stored = domain.verdict.as_deref();
    let serving = domain.verdict.as_ref().filter(|_| domain.serving);
    let own_answers = own.as_ref().is_some_and(|own| {
        policy.serves(own)
            && (own.level > Level::Dns
                || match (stored, serving) {
                    (None, _) => true, // a store from before domain verdicts
                    // Resumed: what the interrupted run found before it stored the
                    // domain's verdict.
                    (Some(d), Some(_)) if this_run(d) => !this_run(own),
                    // The domain's verdict says the same, and is shared.
                    (Some(_), Some(_)) => false,
                    // A later verdict of its domain (too old itself) overrides it.
                    (Some(d), None) => own.verified_at >= d.verified_at,
                })
    });
    match own {
        Some(own) if own_answers => RowAnswer {
            previous: if this_run(&own) {
                own.previous.clone().map(Box::new)
            } else {
                None // the same verdict, reused: nothing changed
            },
            verdict: Some(Arc::new(own)),
        },
        own => {
            let previous = own.as_ref().and_then(|own| replaced(own, run));
            match serving {
                // This (resumed) run verified the domain: its addresses are verified again.
                Some(p) if this_run(p) => RowAnswer {
                    verdict: Some(Arc::clone(p)),
                    previous,
                },
                Some(p) => RowAnswer {
                    verdict: Some(Arc::clone(p)),
                    previous: None,
                },
                None => RowAnswer {
                    verdict: None,
                    previous,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reason;

    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;
    /// This run's id, and an earlier run's.
    const RUN: i64 = 7;
    const EARLIER: i64 = 3;

    /// A verdict an earlier run decided under the default options.
    fn prior(reason: Reason, level: Level, verified_at: i64) -> Prior {
        Prior::new(reason, String::new(), None, level, verified_at, None)
            .decided(DecidedUnder::default(), Some(EARLIER))
    }

    /// The same verdict, written by this (resumed) run.
    fn ours(p: Prior) -> Prior {
        let under = p.under.clone();
        p.decided(under, Some(RUN))
    }

    fn dns_policy(now: i64, max_age: i64) -> CachePolicy {
        CachePolicy {
            level: Level::Dns,
            now,
            max_age,
            fresh: None,
            job_run: None,
            under: DecidedUnder::default(),
        }
    }

    #[test]
    fn cache_policy_by_level_age_and_status() {
        let p = CachePolicy {
            level: Level::Dns,
            now: 100_000,
            max_age: 50_000,
            fresh: None,
            job_run: None,
            under: DecidedUnder::default(),
        };
        assert!(p.serves(&prior(Reason::MailboxAccepted, Level::Smtp, 90_000)));
        assert!(p.serves(&prior(Reason::DomainAcceptsMail, Level::Dns, 60_000)));
        assert!(!p.serves(&prior(Reason::DomainAcceptsMail, Level::Dns, 40_000)));
        // A domain's MX result is reused for a week at most, whatever --max-age says.
        let month = CachePolicy {
            now: 40 * DAY,
            max_age: 30 * DAY,
            ..p.clone()
        };
        assert!(month.serves(&prior(Reason::DomainAcceptsMail, Level::Dns, 34 * DAY)));
        assert!(!month.serves(&prior(Reason::DomainAcceptsMail, Level::Dns, 32 * DAY)));
        assert!(month.serves(&prior(Reason::MailboxAccepted, Level::Smtp, 11 * DAY)));
        // Unknowns are kept an hour at most.
        assert!(p.serves(&prior(Reason::DnsTimeout, Level::Dns, 97_000)));
        assert!(!p.serves(&prior(Reason::DnsTimeout, Level::Dns, 90_000)));
        let smtp = CachePolicy {
            level: Level::Smtp,
            ..p.clone()
        };
        assert!(!smtp.serves(&prior(Reason::DomainAcceptsMail, Level::Dns, 99_000)));
        // --fresh: only this run's verdicts, even one of the same second from another run.
        let fresh = CachePolicy {
            fresh: Some(RUN),
            job_run: None,
            ..p.clone()
        };
        assert!(!fresh.serves(&prior(Reason::DomainAcceptsMail, Level::Dns, 99_000)));
        assert!(fresh.serves(&ours(prior(Reason::DomainAcceptsMail, Level::Dns, 99_000))));
    }

    #[test]
    fn a_jobs_own_verdicts_answer_it_whatever_their_age() {
        let p = CachePolicy {
            job_run: Some(RUN),
            ..dns_policy(10 * DAY, DAY)
        };
        // An unknown the job's worker decided two days ago is still the job's answer…
        assert!(p.serves(&ours(prior(Reason::DnsTimeout, Level::Dns, 8 * DAY))));
        assert!(p.serves(&ours(prior(Reason::Greylisted, Level::Smtp, 0))));
        // …another run's is not, and the level and options still count for the job's own.
        assert!(!p.serves(&prior(Reason::DnsTimeout, Level::Dns, 8 * DAY)));
        let smtp = CachePolicy {
            level: Level::Smtp,
            ..p.clone()
        };
        assert!(!smtp.serves(&ours(prior(
            Reason::DomainAcceptsMail,
            Level::Dns,
            10 * DAY
        ))));
        let private = CachePolicy {
            under: DecidedUnder {
                allow_private_mx: true,
                ..DecidedUnder::default()
            },
            ..p.clone()
        };
        assert!(!private.serves(&ours(prior(
            Reason::DomainAcceptsMail,
            Level::Dns,
            10 * DAY
        ))));
    }

    #[test]
    fn an_age_limit_is_inclusive_and_the_shortest_applies() {
        let p = dns_policy(10 * DAY, 30 * DAY);
        // Exactly at the limit still serves; a second more does not.
        assert!(p.within(10 * DAY - 5, 5));
        assert!(!p.within(10 * DAY - 6, 5));
        // An unknown smtp-level verdict: the hour wins over --max-age.
        let unknown = |at| prior(Reason::Greylisted, Level::Smtp, at);
        assert_eq!(Reason::Greylisted.status(), Status::Unknown);
        assert!(p.serves(&unknown(10 * DAY - HOUR)));
        assert!(!p.serves(&unknown(10 * DAY - HOUR - 1)));
        // A known smtp-level verdict lives as long as --max-age says.
        assert!(p.serves(&prior(Reason::MailboxAccepted, Level::Smtp, 0)));
        let short = dns_policy(10 * DAY, DAY);
        assert!(!short.serves(&prior(Reason::MailboxAccepted, Level::Smtp, 8 * DAY)));
    }

    #[test]
    fn a_domain_verdict_is_kept_seven_days() {
        let p = dns_policy(100 * DAY, 90 * DAY);
        let domain = |at| prior(Reason::DomainAcceptsMail, Level::Dns, at);
        assert!(p.serves(&domain(93 * DAY)));
        assert!(!p.serves(&domain(93 * DAY - 1)));
    }

    #[test]
    fn a_verdict_serves_its_level_and_the_ones_below() {
        let at = 1_000;
        let now = dns_policy(at, DAY);
        let smtp_run = CachePolicy {
            level: Level::Smtp,
            ..now.clone()
        };
        let by_dns = prior(Reason::DomainAcceptsMail, Level::Dns, at);
        let by_smtp = prior(Reason::MailboxAccepted, Level::Smtp, at);
        assert!(now.serves(&by_dns) && now.serves(&by_smtp));
        assert!(!smtp_run.serves(&by_dns) && smtp_run.serves(&by_smtp));
    }

    fn stored(verdict: Option<Prior>, smtp_at: Option<i64>) -> StoredDomain {
        StoredDomain { verdict, smtp_at }
    }

    #[test]
    fn a_domain_verdict_answers_alone_only_when_nothing_says_more() {
        let p = dns_policy(10 * DAY, 30 * DAY);
        let run_started = 10 * DAY - 60;
        let verdict = || Some(prior(Reason::DomainAcceptsMail, Level::Dns, 9 * DAY));
        let alone = DomainState::of(stored(verdict(), None), &p, RUN);
        assert!(alone.serving && alone.lone_answer().is_some());
        assert!(!alone.needs_own_verdict());
        // One of its addresses was probed recently: the addresses' own rows say more.
        let probed = DomainState::of(stored(verdict(), Some(9 * DAY)), &p, RUN);
        assert!(probed.serving && probed.lone_answer().is_none());
        // An smtp verdict older than --max-age does not stop the domain's from answering.
        let short = dns_policy(10 * DAY, 5 * DAY);
        let long_ago = DomainState::of(stored(verdict(), Some(4 * DAY)), &short, RUN);
        assert!(long_ago.lone_answer().is_some());
        // This (resumed) run wrote it: the addresses' own rows keep their history.
        let own = Some(ours(prior(
            Reason::DomainAcceptsMail,
            Level::Dns,
            run_started,
        )));
        let resumed = DomainState::of(stored(own, None), &p, RUN);
        assert!(resumed.serving && resumed.lone_answer().is_none());
        // Too old to serve.
        let old = Some(prior(Reason::DomainAcceptsMail, Level::Dns, DAY));
        let stale = DomainState::of(stored(old, None), &p, RUN);
        assert!(!stale.serving && stale.lone_answer().is_none());
        assert!(DomainState::NOTHING.needs_own_verdict());
    }

    #[test]
    fn an_smtp_verdict_wins_over_its_domains() {
        let p = dns_policy(10 * DAY, 30 * DAY);
        let domain = stored(
            Some(prior(Reason::DomainAcceptsMail, Level::Dns, 9 * DAY)),
            Some(8 * DAY),
        );
        let domain = DomainState::of(domain, &p, RUN);
        let own = prior(Reason::MailboxNotFound, Level::Smtp, 8 * DAY);
        let answer = answer_row(&p, &domain, Some(own), RUN);
        let verdict = answer.verdict.expect("the smtp verdict answers");
        assert_eq!(verdict.reason, Reason::MailboxNotFound);
        // Reused as it was: nothing changed.
        assert!(answer.previous.is_none());
    }

    #[test]
    fn a_shared_domain_verdict_answers_over_the_addresses_own_dns_row() {
        let p = dns_policy(10 * DAY, 30 * DAY);
        let domain = stored(
            Some(prior(Reason::DomainAcceptsMail, Level::Dns, 9 * DAY)),
            None,
        );
        let domain = DomainState::of(domain, &p, RUN);
        let own = prior(Reason::DomainAcceptsMail, Level::Dns, 9 * DAY);
        let answer = answer_row(&p, &domain, Some(own), RUN);
        assert!(Arc::ptr_eq(
            &answer.verdict.unwrap(),
            domain.verdict.as_ref().unwrap()
        ));
        assert!(answer.previous.is_none());
    }

    #[test]
    fn a_later_domain_verdict_overrides_an_older_address_row() {
        let p = dns_policy(10 * DAY, 30 * DAY);
        // The domain's verdict is too old to serve (over a week), the address's is older still.
        let domain = stored(Some(prior(Reason::NoMailServer, Level::Dns, 2 * DAY)), None);
        let domain = DomainState::of(domain, &p, RUN);
        let own = prior(Reason::DomainAcceptsMail, Level::Dns, DAY);
        let answer = answer_row(&p, &domain, Some(own), RUN);
        assert!(answer.verdict.is_none());
        // Verified again in this run: compared with what it said.
        let previous = answer.previous.expect("compared for changes.csv");
        assert_eq!(
            (previous.reason, previous.verified_at),
            (Reason::DomainAcceptsMail, DAY)
        );
        // From a store before domain verdicts: the address's own row answers.
        let none = DomainState::default();
        let own = prior(Reason::DomainAcceptsMail, Level::Dns, 9 * DAY);
        assert!(answer_row(&p, &none, Some(own), RUN).verdict.is_some());
    }

    #[test]
    fn a_resumed_run_answers_from_its_own_verdicts() {
        let p = dns_policy(10 * DAY, 30 * DAY);
        let run_started = 10 * DAY - 600;
        let earlier = Previous {
            status: Status::Invalid,
            reason: Reason::NoMailServer,
            verified_at: DAY,
        };
        // The interrupted run stored the domain's verdict: its addresses are verified again,
        // and compare with what their rows held before this run.
        let domain = stored(
            Some(ours(prior(
                Reason::DomainAcceptsMail,
                Level::Dns,
                run_started + 10,
            ))),
            None,
        );
        let domain = DomainState::of(domain, &p, RUN);
        let old_row = prior(Reason::NoMailServer, Level::Dns, 2 * DAY);
        let answer = answer_row(&p, &domain, Some(old_row), RUN);
        assert_eq!(answer.verdict.unwrap().reason, Reason::DomainAcceptsMail);
        assert_eq!(answer.previous.unwrap().reason, Reason::NoMailServer);
        // An address the interrupted run verified before storing its domain's verdict: the
        // domain's verdict answers, compared with what the address held before this run.
        let before = Prior::new(
            Reason::DomainAcceptsMail,
            String::new(),
            None,
            Level::Dns,
            run_started + 5,
            Some(earlier.clone()),
        )
        .decided(DecidedUnder::default(), Some(RUN));
        let domain_later = stored(
            Some(ours(prior(
                Reason::DomainAcceptsMail,
                Level::Dns,
                run_started + 10,
            ))),
            None,
        );
        let domain_later = DomainState::of(domain_later, &p, RUN);
        let answer = answer_row(&p, &domain_later, Some(before.clone()), RUN);
        assert!(Arc::ptr_eq(
            &answer.verdict.unwrap(),
            domain_later.verdict.as_ref().unwrap()
        ));
        assert_eq!(answer.previous.as_deref(), Some(&earlier));
        // No domain verdict yet: the address's own verdict of this run answers, with the
        // verdict it replaced for changes.csv.
        let answer = answer_row(&p, DomainState::NOTHING, Some(before), RUN);
        assert_eq!(answer.verdict.unwrap().verified_at, run_started + 5);
        assert_eq!(answer.previous.as_deref(), Some(&earlier));
    }

    #[test]
    fn the_previous_verdict_is_the_stored_one_unless_this_run_wrote_it() {
        let run_started = 1_000;
        let earlier = Previous {
            status: Status::Valid,
            reason: Reason::DomainAcceptsMail,
            verified_at: 10,
        };
        let stored_before = prior(Reason::NoMailServer, Level::Dns, 500);
        let previous = replaced(&stored_before, RUN).unwrap();
        assert_eq!(
            (previous.status, previous.reason, previous.verified_at),
            (Reason::NoMailServer.status(), Reason::NoMailServer, 500)
        );
        let written_now = Prior::new(
            Reason::NoMailServer,
            String::new(),
            None,
            Level::Dns,
            run_started,
            Some(earlier.clone()),
        )
        .decided(DecidedUnder::default(), Some(RUN));
        assert_eq!(replaced(&written_now, RUN).as_deref(), Some(&earlier));
        let first_ever = ours(prior(Reason::NoMailServer, Level::Dns, run_started));
        // Written in the very second this run started, by another run: not this run's.
        let same_second = prior(Reason::NoMailServer, Level::Dns, run_started);
        assert_eq!(
            replaced(&same_second, RUN).map(|p| p.verified_at),
            Some(run_started)
        );
        assert!(replaced(&first_ever, RUN).is_none());
        // No stored verdict and no serving domain: nothing answers, nothing to compare.
        let p = dns_policy(2_000, DAY);
        let answer = answer_row(&p, DomainState::NOTHING, None, RUN);
        assert!(answer.verdict.is_none() && answer.previous.is_none());
    }

    /// Issue #14, item 3: a verdict serves only a run under the options it was decided under.
    #[test]
    fn a_verdict_serves_only_under_the_options_that_decided_it() {
        let default = dns_policy(10 * DAY, 30 * DAY);
        let private = CachePolicy {
            under: DecidedUnder {
                allow_private_mx: true,
                sender: None,
            },
            ..default.clone()
        };
        let under = |allow_private_mx| DecidedUnder {
            allow_private_mx,
            sender: None,
        };
        // Decided with --allow-private-mx: a lab's private MX takes mail…
        let accepts = prior(Reason::DomainAcceptsMail, Level::Dns, 9 * DAY)
            .decided(under(true), Some(EARLIER));
        assert!(private.serves(&accepts));
        // …which a run without the flag must find mx-unroutable itself.
        assert!(!default.serves(&accepts));
        // And the other way round.
        let unroutable = prior(Reason::MxUnroutable, Level::Dns, 9 * DAY);
        assert!(default.serves(&unroutable));
        assert!(!private.serves(&unroutable));
        // A domain's verdict decided under other options does not answer its addresses.
        let state = DomainState::of(stored(Some(accepts), None), &default, RUN);
        assert!(!state.serving && state.lone_answer().is_none());
        let answer = answer_row(&default, &state, None, RUN);
        assert!(answer.verdict.is_none());
    }

    /// Issue #14, item 3: at level smtp the sender is part of the policy.
    #[test]
    fn an_smtp_verdict_serves_only_the_sender_that_probed() {
        let smtp_run = |sender: &str| CachePolicy {
            level: Level::Smtp,
            under: DecidedUnder {
                allow_private_mx: false,
                sender: Some(sender.into()),
            },
            ..dns_policy(10 * DAY, 30 * DAY)
        };
        let probed_by = |sender: Option<&str>| {
            prior(Reason::MailboxNotFound, Level::Smtp, 9 * DAY).decided(
                DecidedUnder {
                    allow_private_mx: false,
                    sender: sender.map(str::to_owned),
                },
                Some(EARLIER),
            )
        };
        let a = DecidedUnder::sender_of("a@lab.test", "lab.test");
        let b = DecidedUnder::sender_of("b@other.test", "other.test");
        assert!(smtp_run(&a).serves(&probed_by(Some(&a))));
        assert!(!smtp_run(&b).serves(&probed_by(Some(&a))));
        // A dns-level run sends nothing: any sender's smtp verdict says more than its own.
        assert!(dns_policy(10 * DAY, 30 * DAY).serves(&probed_by(Some(&a))));
        // Stored before senders were recorded: presumed the run's.
        assert!(smtp_run(&b).serves(&probed_by(None)));
    }

    #[test]
    fn options_are_stored_as_codes_and_an_unknown_code_is_a_miss() {
        for allow_private_mx in [false, true] {
            let u = DecidedUnder {
                allow_private_mx,
                sender: None,
            };
            assert_eq!(DecidedUnder::from_codes(u.options_code(), None), Some(u));
        }
        // What a store from before the options were recorded holds: the defaults.
        assert_eq!(
            DecidedUnder::from_codes("", None),
            Some(DecidedUnder::default())
        );
        assert_eq!(DecidedUnder::from_codes("allow-everything", None), None);
    }
}
