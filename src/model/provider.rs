//! Which mailbox provider receives mail for an address: told by its mail server's host name
//! (the MX, or the remote MTA a bounce names), else by the well-known consumer domains. The table
//! is data (`providers.toml`, shipped in the binary; `--providers FILE` overrides or extends it):
//! per provider its politeness and what its answers mean. Reports group by it because reputation
//! is kept per provider: a spike of blocks at one of them is a problem with that provider, not
//! with the list.

use std::sync::LazyLock;

use serde::Deserialize;

/// One provider's entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Stable id (`google`, `microsoft365`, `outlook`, `yahoo` …).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Host-name patterns of its mail servers (`*` matches any run of characters).
    #[serde(default)]
    pub mx: Vec<String>,
    /// Its consumer domains, for when no server name is known.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Sessions at once to one of its server addresses.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Pause between two sessions to one server address, in milliseconds.
    #[serde(default = "default_pause")]
    pub pause_ms: u64,
    /// Recipients per MAIL transaction.
    #[serde(default = "default_rcpt")]
    pub rcpt_per_transaction: usize,
    /// Its servers accept every recipient at RCPT and bounce later.
    #[serde(default)]
    pub accepts_all: bool,
    /// A rate limit at one of its servers backs off all of them: its limits are counted per
    /// sender across its whole fleet, so another address of it would only say the same.
    #[serde(default)]
    pub shared_backoff: bool,
    /// Its servers are probed through this SOCKS5 proxy (`socks5://[user:pass@]host:port`)
    /// instead of the run's egress: an address of its own for a provider that judges the
    /// prober harshly.
    #[serde(default)]
    pub proxy: Option<String>,
}

fn default_connections() -> usize {
    2
}
fn default_pause() -> u64 {
    100
}
fn default_rcpt() -> usize {
    20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    provider: Vec<Provider>,
}

/// The providers, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTable {
    providers: Vec<Provider>,
}

const BUILT_IN: &str = include_str!("providers.toml");

static DEFAULT: LazyLock<ProviderTable> =
    LazyLock::new(|| ProviderTable::parse(BUILT_IN).expect("the built-in provider table parses"));

impl ProviderTable {
    /// The table shipped in the binary.
    pub fn built_in() -> &'static ProviderTable {
        &DEFAULT
    }

    /// A table from TOML text (`[[provider]]` entries), checked.
    pub fn parse(text: &str) -> Result<ProviderTable, String> {
        let file: TableFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        for p in &file.provider {
            let id_ok = !p.id.is_empty()
                && p.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !id_ok {
                return Err(format!(
                    "provider id {:?}: use lower-case letters, digits and '-'",
                    p.id
                ));
            }
            if p.connections == 0 || p.rcpt_per_transaction == 0 {
                return Err(format!(
                    "provider {}: connections and rcpt_per_transaction must be at least 1",
                    p.id
                ));
            }
            if p.mx.is_empty() && p.domains.is_empty() {
                return Err(format!(
                    "provider {}: give its mail servers (mx) or its domains",
                    p.id
                ));
            }
        }
        Ok(ProviderTable {
            providers: file.provider,
        })
    }

    /// This table with `overrides` (TOML text) applied: an entry with a known id replaces it,
    /// a new one is added before the built-in ones (it is tried first).
    pub fn with_overrides(&self, overrides: &str) -> Result<ProviderTable, String> {
        let extra = ProviderTable::parse(overrides)?;
        let mut providers: Vec<Provider> = extra
            .providers
            .iter()
            .filter(|p| !self.providers.iter().any(|q| q.id == p.id))
            .cloned()
            .collect();
        for p in &self.providers {
            providers.push(
                extra
                    .providers
                    .iter()
                    .find(|q| q.id == p.id)
                    .unwrap_or(p)
                    .clone(),
            );
        }
        Ok(ProviderTable { providers })
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The position in [`ProviderTable::providers`] of a mail server's provider.
    pub fn index_of_host(&self, host: &str) -> Option<usize> {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        self.providers.iter().position(|p| {
            p.mx.iter()
                .any(|pattern| glob(&pattern.to_ascii_lowercase(), &host))
        })
    }

    /// The provider of a mail server's host name.
    pub fn of_host(&self, host: &str) -> Option<&Provider> {
        self.index_of_host(host).map(|i| &self.providers[i])
    }

    /// The provider of an address's domain: by its mail server's name when one is known, else
    /// by the domain if it is one of a provider's consumer domains.
    pub fn of(&self, domain: &str, mail_server: Option<&str>) -> Option<&Provider> {
        mail_server
            .and_then(host_of)
            .and_then(|h| self.of_host(&h))
            .or_else(|| {
                let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
                self.providers
                    .iter()
                    .find(|p| p.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)))
            })
    }
}

/// The built-in table's display name for a domain and server (see [`ProviderTable::of`]).
pub fn provider_of(domain: &str, mail_server: Option<&str>) -> Option<&'static str> {
    ProviderTable::built_in()
        .of(domain, mail_server)
        .map(|p| p.name.as_str())
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The host name in what a report says of a server: `dns; mx.example.com`,
/// `mx.example.com [192.0.2.1]`, `mx.example.com (192.0.2.1)`; None for a bare address.
fn host_of(text: &str) -> Option<String> {
    let text = text.rsplit_once(';').map_or(text, |(_, t)| t);
    text.split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '(' | ')' | '<' | '>'))
        .find(|w| w.contains('.') && w.bytes().any(|b| b.is_ascii_alphabetic()))
        .map(|w| w.trim_end_matches(['.', ',', ':']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(host: &str) -> Option<&'static str> {
        ProviderTable::built_in()
            .of_host(host)
            .map(|p| p.id.as_str())
    }

    #[test]
    fn patterns() {
        assert!(glob("*.l.google.com", "gmail-smtp-in.l.google.com"));
        assert!(!glob("*.l.google.com", "l.google.com"));
        assert!(glob("aspmx*.googlemail.com", "aspmx2.googlemail.com"));
        assert!(glob("aspmx*.googlemail.com", "aspmx.googlemail.com"));
        assert!(glob("mx.yandex.net", "mx.yandex.net"));
        assert!(!glob("mx.yandex.net", "mx.yandex.net.evil.test"));
        assert!(glob("a*b*c", "aXbYc") && !glob("a*b*c", "aXcYb"));
        assert!(glob("*", "anything") && glob("ab*", "ab"));
    }

    #[test]
    fn the_issue_s_providers_by_their_servers() {
        assert_eq!(id("gmail-smtp-in.l.google.com."), Some("google"));
        assert_eq!(id("ALT1.ASPMX.L.GOOGLE.COM"), Some("google"));
        assert_eq!(id("smtp.google.com"), Some("google"));
        assert_eq!(
            id("example-com.mail.protection.outlook.com"),
            Some("microsoft365")
        );
        assert_eq!(id("eur.olc.protection.outlook.com"), Some("outlook"));
        assert_eq!(id("mta7.am0.yahoodns.net"), Some("yahoo"));
        assert_eq!(id("mxs.mail.ru"), Some("mailru"));
        assert_eq!(id("mx.yandex.net"), Some("yandex"));
        assert_eq!(id("mx0a-001.pphosted.com"), Some("proofpoint"));
        assert_eq!(id("eu-smtp-inbound-1.mimecast.com"), Some("mimecast"));
        assert_eq!(id("notgoogle.com"), None);
        assert_eq!(id("mx.example.com"), None);
        let yahoo = ProviderTable::built_in()
            .of_host("mta5.am0.yahoodns.net")
            .unwrap();
        assert!(yahoo.accepts_all);
        let outlook = ProviderTable::built_in()
            .of_host("x.olc.protection.outlook.com")
            .unwrap();
        assert_eq!(outlook.rcpt_per_transaction, 1);
        let table = ProviderTable::built_in();
        let google = table.index_of_host("aspmx.l.google.com").unwrap();
        assert_eq!(table.providers()[google].id, "google");
        assert!(table.providers()[google].shared_backoff);
        assert!(!outlook.shared_backoff);
    }

    #[test]
    fn the_server_a_report_names_decides_before_the_domain() {
        assert_eq!(
            provider_of("example.org", Some("dns; aspmx.l.google.com")),
            Some("Google")
        );
        assert_eq!(
            provider_of("example.org", Some("mx01.mail.icloud.com [17.57.154.6]")),
            Some("Apple iCloud")
        );
        assert_eq!(provider_of("hotmail.com", None), Some("Outlook.com"));
        assert_eq!(
            provider_of("Hotmail.COM.", Some("192.0.2.1")),
            Some("Outlook.com")
        );
        assert_eq!(provider_of("example.org", Some("[192.0.2.1]")), None);
        assert_eq!(provider_of("example.org", None), None);
    }

    #[test]
    fn overrides_replace_by_id_and_new_entries_come_first() {
        let table = ProviderTable::built_in()
            .with_overrides(
                r#"
                [[provider]]
                id = "yahoo"
                name = "Yahoo (probed)"
                mx = ["*.yahoodns.net"]
                accepts_all = false

                [[provider]]
                id = "corp-gateway"
                name = "Our gateway"
                mx = ["*.l.google.com"]
                "#,
            )
            .expect("valid overrides");
        let yahoo = table.of_host("mta5.am0.yahoodns.net").unwrap();
        assert_eq!(
            (yahoo.name.as_str(), yahoo.accepts_all),
            ("Yahoo (probed)", false)
        );
        assert_eq!(
            table.of_host("aspmx.l.google.com").unwrap().id,
            "corp-gateway"
        );
        assert_eq!(
            table.providers().len(),
            ProviderTable::built_in().providers().len() + 1
        );
        for bad in [
            "[[provider]]\nid = \"Bad Id\"\nname = \"x\"\nmx = [\"a\"]",
            "[[provider]]\nid = \"x\"\nname = \"x\"",
            "[[provider]]\nid = \"x\"\nname = \"x\"\nmx = [\"a\"]\nconnections = 0",
            "[[provider]]\nid = \"x\"\nname = \"x\"\nmx = [\"a\"]\ncolour = \"red\"",
        ] {
            assert!(ProviderTable::parse(bad).is_err(), "{bad}");
        }
    }
}
