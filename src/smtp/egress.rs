//! Whether this machine can open SMTP connections at all, judged during a run from the first
//! mail servers' connection outcomes (pure: the prober feeds it, it decides).
//!
//! Most cloud VMs and home connections filter outbound port 25. There every connection times
//! out (or is refused by a firewall), and a run would spend a connection timeout on every
//! domain of the list to produce nothing but unknowns. When the first `needed` of the first
//! `window` distinct servers to answer all failed to connect and none connected, the judge
//! says [`Judgement::Blocked`]; one connection that succeeds settles [`Judgement::Works`] for
//! good. Failures that say nothing about port 25 (no route, such as IPv6 on an IPv4-only
//! machine) take a place in the window without counting as failures, so a few of them cannot
//! trip the judge; a list where a few servers are dead trips it only if every one of the first
//! `needed` servers is dead, which one working server among them rules out.

use std::collections::HashSet;
use std::hash::Hash;

/// How one TCP connection attempt to a mail server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The TCP handshake completed (whatever the server said next).
    Connected,
    /// Refused (a reset: nothing listens, or a firewall rejects).
    Refused,
    /// No answer within the connection timeout (a firewall drops).
    TimedOut,
    /// A failure that says nothing about port 25: no route to the network, an address family
    /// this machine cannot use.
    Unreachable,
}

/// The judge's conclusion so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Too few servers have answered yet.
    Undecided,
    /// Connections get through (or the window closed without enough failures): never
    /// revisited.
    Works,
    /// Connections do not get through: stop opening new ones.
    Blocked(Failures),
}

/// What the servers of the window did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failures {
    /// Distinct servers whose first connection attempt failed (refused + timed out).
    pub servers: usize,
    pub refused: usize,
    pub timed_out: usize,
}

/// Who found port 25 blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedBy {
    /// The judge, from the run's first mail servers.
    FirstServers,
    /// The preflight before the run: every probe target was filtered or refused.
    Preflight,
}

/// Port 25 found blocked: the SMTP stage opens no more connections and the run finishes at
/// level dns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EgressBlock {
    pub by: BlockedBy,
    pub failures: Failures,
}

impl EgressBlock {
    /// A stable code for summary.json.
    pub fn cause(&self) -> &'static str {
        match self.by {
            BlockedBy::FirstServers => "connections-failed",
            BlockedBy::Preflight => "preflight-port25",
        }
    }

    /// One message for the person running it: what was seen, what it means, what to do.
    pub fn message(&self) -> String {
        let f = &self.failures;
        let seen = match self.by {
            BlockedBy::FirstServers => format!(
                "the first {} mail servers contacted all failed to connect on port 25 \
                 ({} timed out, {} refused) while DNS answered",
                f.servers, f.timed_out, f.refused
            ),
            BlockedBy::Preflight => format!(
                "the preflight could not connect to port 25 of any of its {} probe targets \
                 ({} timed out, {} refused)",
                f.servers, f.timed_out, f.refused
            ),
        };
        let stop = match self.by {
            BlockedBy::FirstServers => "No more SMTP connections are opened",
            BlockedBy::Preflight => "No SMTP connection is opened",
        };
        format!(
            "{seen}: this machine cannot reach port 25 (most cloud VMs and home connections \
             cannot). {stop} and the run finishes at level dns: every row keeps its DNS \
             verdict, the mailboxes were not checked. Run --level smtp from a host that can \
             connect out on port 25."
        )
    }
}

/// How many servers the judge looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JudgeConfig {
    /// The first this many distinct servers to answer are judged; later ones are ignored.
    pub window: usize,
    /// Failed connections (refused or timed out) among them, with none connected, that mean
    /// the machine cannot reach port 25.
    pub needed: usize,
}

impl Default for JudgeConfig {
    /// 8 of the first 10.
    fn default() -> Self {
        JudgeConfig {
            window: 10,
            needed: 8,
        }
    }
}

/// Fed the first connection outcome of each distinct server (`K`: its address).
#[derive(Debug, Clone)]
pub struct EgressJudge<K> {
    config: JudgeConfig,
    seen: HashSet<K>,
    failures: Failures,
    judgement: Judgement,
}

impl<K: Eq + Hash> EgressJudge<K> {
    /// A `needed` of 0 (or above `window`) could never be met honestly: it is clamped to 1..=window.
    pub fn new(config: JudgeConfig) -> Self {
        let window = config.window.max(1);
        EgressJudge {
            config: JudgeConfig {
                window,
                needed: config.needed.clamp(1, window),
            },
            seen: HashSet::new(),
            failures: Failures::default(),
            judgement: Judgement::Undecided,
        }
    }

    pub fn judgement(&self) -> Judgement {
        self.judgement
    }

    /// One connection attempt's outcome; returns the judgement after it. Only a server's first
    /// outcome counts, and nothing changes a settled judgement.
    pub fn record(&mut self, server: K, outcome: ConnectOutcome) -> Judgement {
        if self.judgement != Judgement::Undecided
            || self.seen.len() >= self.config.window
            || !self.seen.insert(server)
        {
            return self.judgement;
        }
        let f = &mut self.failures;
        match outcome {
            ConnectOutcome::Connected => {
                self.judgement = Judgement::Works;
                return self.judgement;
            }
            ConnectOutcome::Refused => f.refused += 1,
            ConnectOutcome::TimedOut => f.timed_out += 1,
            ConnectOutcome::Unreachable => {}
        }
        f.servers = f.refused + f.timed_out;
        if f.servers >= self.config.needed {
            self.judgement = Judgement::Blocked(*f);
        } else if self.seen.len() >= self.config.window {
            self.judgement = Judgement::Works;
        }
        self.judgement
    }

    /// The probing that could have tripped the judge is over (a window of the list is done)
    /// without enough failures: a few dead servers, not a blocked port. Settles `Works` unless
    /// already settled.
    pub fn settle(&mut self) -> Judgement {
        if self.judgement == Judgement::Undecided {
            self.judgement = Judgement::Works;
        }
        self.judgement
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectOutcome::{Connected, Refused, TimedOut, Unreachable};
    use super::*;

    const OUTCOMES: [ConnectOutcome; 4] = [Connected, Refused, TimedOut, Unreachable];

    fn judge() -> EgressJudge<u32> {
        EgressJudge::new(JudgeConfig::default())
    }

    /// What the judge must conclude from distinct servers' outcomes, in order: the rule
    /// written plainly, to check the incremental judge against.
    fn expected(outcomes: &[ConnectOutcome], config: JudgeConfig) -> Judgement {
        let mut f = Failures::default();
        for (i, o) in outcomes.iter().enumerate().take(config.window) {
            match o {
                Connected => return Judgement::Works,
                Refused => f.refused += 1,
                TimedOut => f.timed_out += 1,
                Unreachable => {}
            }
            f.servers = f.refused + f.timed_out;
            if f.servers == config.needed {
                return Judgement::Blocked(f);
            }
            if i + 1 == config.window {
                return Judgement::Works;
            }
        }
        Judgement::Undecided
    }

    /// Every sequence of outcomes over up to `len` distinct servers, as base-4 digits.
    fn every_sequence(len: u32) -> impl Iterator<Item = Vec<ConnectOutcome>> {
        (0..=len).flat_map(|n| {
            (0..4u32.pow(n)).map(move |mut code| {
                (0..n)
                    .map(|_| {
                        let o = OUTCOMES[(code % 4) as usize];
                        code /= 4;
                        o
                    })
                    .collect()
            })
        })
    }

    #[test]
    fn every_sequence_of_outcomes_is_judged_by_the_rule() {
        // Small windows, past their end (sequences longer than the window); then the default
        // over every sequence of its ten servers (1.4 million).
        for config in [
            JudgeConfig {
                window: 5,
                needed: 4,
            },
            JudgeConfig {
                window: 4,
                needed: 4,
            },
        ] {
            for seq in every_sequence(7) {
                let mut j = EgressJudge::new(config);
                for (server, o) in seq.iter().enumerate() {
                    j.record(server as u32, *o);
                }
                assert_eq!(j.judgement(), expected(&seq, config), "{seq:?} {config:?}");
            }
        }
        let config = JudgeConfig::default();
        for seq in every_sequence(10) {
            let mut j = EgressJudge::new(config);
            for (server, o) in seq.iter().enumerate() {
                j.record(server as u32, *o);
            }
            assert_eq!(j.judgement(), expected(&seq, config), "{seq:?}");
        }
    }

    #[test]
    fn eight_silent_servers_block_and_the_failures_are_counted() {
        let mut j = judge();
        for server in 0..7 {
            let o = if server % 2 == 0 { TimedOut } else { Refused };
            assert_eq!(j.record(server, o), Judgement::Undecided);
        }
        assert_eq!(
            j.record(7, TimedOut),
            Judgement::Blocked(Failures {
                servers: 8,
                refused: 3,
                timed_out: 5
            })
        );
        // Settled: a connection that got through just after changes nothing.
        assert!(matches!(j.record(8, Connected), Judgement::Blocked(_)));
        assert!(matches!(j.settle(), Judgement::Blocked(_)));
    }

    #[test]
    fn one_server_that_connects_rules_out_a_block_for_good() {
        let mut j = judge();
        for server in 0..3 {
            j.record(server, Refused);
        }
        assert_eq!(j.record(3, Connected), Judgement::Works);
        for server in 4..40 {
            assert_eq!(j.record(server, TimedOut), Judgement::Works);
        }
    }

    #[test]
    fn only_a_servers_first_outcome_counts() {
        let mut j = judge();
        // One dead server retried many times is one server, not eight.
        for _ in 0..20 {
            assert_eq!(j.record(1, TimedOut), Judgement::Undecided);
        }
        // Its later success does not count either (it is the same first outcome's server).
        assert_eq!(j.record(1, Connected), Judgement::Undecided);
        assert_eq!(j.record(2, Connected), Judgement::Works);
    }

    #[test]
    fn unroutable_servers_fill_the_window_without_tripping_it() {
        let mut j = judge();
        for server in 0..3 {
            j.record(server, Unreachable);
        }
        // 7 failures after 3 no-routes: the window of 10 is full with too few failures.
        for server in 3..9 {
            assert_eq!(j.record(server, TimedOut), Judgement::Undecided);
        }
        assert_eq!(j.record(9, TimedOut), Judgement::Works);
        assert_eq!(j.record(10, TimedOut), Judgement::Works);
    }

    #[test]
    fn a_small_list_of_dead_servers_is_settled_as_working_at_the_end() {
        let mut j = judge();
        for server in 0..5 {
            j.record(server, TimedOut);
        }
        assert_eq!(j.judgement(), Judgement::Undecided);
        assert_eq!(j.settle(), Judgement::Works);
        // Settled: later failures change nothing.
        for server in 5..20 {
            assert_eq!(j.record(server, TimedOut), Judgement::Works);
        }
    }

    #[test]
    fn settle_keeps_a_block() {
        let mut j = EgressJudge::new(JudgeConfig {
            window: 2,
            needed: 2,
        });
        j.record("a", Refused);
        j.record("b", Refused);
        assert!(matches!(j.settle(), Judgement::Blocked(_)));
    }

    #[test]
    fn the_message_says_what_was_seen_and_what_to_do() {
        let failures = Failures {
            servers: 8,
            refused: 3,
            timed_out: 5,
        };
        let during = EgressBlock {
            by: BlockedBy::FirstServers,
            failures,
        };
        assert_eq!(during.cause(), "connections-failed");
        let m = during.message();
        assert!(
            m.starts_with("the first 8 mail servers contacted all failed to connect on port 25 (5 timed out, 3 refused)"),
            "{m}"
        );
        assert!(m.contains("finishes at level dns"), "{m}");
        let before = EgressBlock {
            by: BlockedBy::Preflight,
            failures,
        };
        assert_eq!(before.cause(), "preflight-port25");
        assert!(before.message().contains("any of its 8 probe targets"));
    }

    #[test]
    fn needed_is_clamped_to_the_window() {
        let mut zero = EgressJudge::new(JudgeConfig {
            window: 3,
            needed: 0,
        });
        // Needed 0 would block before any failure: at least one is required.
        assert_eq!(zero.judgement(), Judgement::Undecided);
        assert!(matches!(zero.record(1, TimedOut), Judgement::Blocked(_)));
        let mut over = EgressJudge::new(JudgeConfig {
            window: 2,
            needed: 5,
        });
        over.record(1, TimedOut);
        assert!(matches!(over.record(2, TimedOut), Judgement::Blocked(_)));
    }
}
