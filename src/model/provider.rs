//! Which mailbox provider receives mail for an address: told by its mail server's host name
//! (the MX, or the remote MTA a bounce names), else by the well-known consumer domains. Reports
//! group by it because reputation is kept per provider: a spike of blocks at one of them is a
//! problem with that provider, not with the list.

/// Host-name suffixes of the big providers' mail servers, and their display names.
const MX_SUFFIXES: &[(&str, &str)] = &[
    ("google.com", "Google"),
    ("googlemail.com", "Google"),
    ("protection.outlook.com", "Microsoft"),
    ("outlook.com", "Microsoft"),
    ("hotmail.com", "Microsoft"),
    ("yahoodns.net", "Yahoo/AOL"),
    ("yahoo.com", "Yahoo/AOL"),
    ("yahoo.net", "Yahoo/AOL"),
    ("aol.com", "Yahoo/AOL"),
    ("icloud.com", "Apple iCloud"),
    ("me.com", "Apple iCloud"),
    ("pphosted.com", "Proofpoint"),
    ("ppe-hosted.com", "Proofpoint"),
    ("mimecast.com", "Mimecast"),
    ("barracudanetworks.com", "Barracuda"),
    ("messagelabs.com", "Broadcom MessageLabs"),
    ("mail.ru", "Mail.ru"),
    ("yandex.net", "Yandex"),
    ("yandex.ru", "Yandex"),
    ("gmx.net", "GMX/WEB.DE"),
    ("web.de", "GMX/WEB.DE"),
    ("zoho.com", "Zoho"),
    ("messagingengine.com", "Fastmail"),
    ("comcast.net", "Comcast"),
    ("orange.fr", "Orange"),
];

/// Consumer domains whose mail servers are one of the providers above.
const DOMAINS: &[(&str, &str)] = &[
    ("gmail.com", "Google"),
    ("googlemail.com", "Google"),
    ("outlook.com", "Microsoft"),
    ("hotmail.com", "Microsoft"),
    ("hotmail.co.uk", "Microsoft"),
    ("hotmail.fr", "Microsoft"),
    ("live.com", "Microsoft"),
    ("msn.com", "Microsoft"),
    ("yahoo.com", "Yahoo/AOL"),
    ("yahoo.co.uk", "Yahoo/AOL"),
    ("yahoo.fr", "Yahoo/AOL"),
    ("ymail.com", "Yahoo/AOL"),
    ("rocketmail.com", "Yahoo/AOL"),
    ("aol.com", "Yahoo/AOL"),
    ("aim.com", "Yahoo/AOL"),
    ("icloud.com", "Apple iCloud"),
    ("me.com", "Apple iCloud"),
    ("mac.com", "Apple iCloud"),
    ("mail.ru", "Mail.ru"),
    ("bk.ru", "Mail.ru"),
    ("inbox.ru", "Mail.ru"),
    ("list.ru", "Mail.ru"),
    ("yandex.ru", "Yandex"),
    ("yandex.com", "Yandex"),
    ("ya.ru", "Yandex"),
    ("gmx.de", "GMX/WEB.DE"),
    ("gmx.net", "GMX/WEB.DE"),
    ("gmx.com", "GMX/WEB.DE"),
    ("web.de", "GMX/WEB.DE"),
    ("zoho.com", "Zoho"),
    ("fastmail.com", "Fastmail"),
    ("comcast.net", "Comcast"),
    ("orange.fr", "Orange"),
    ("wanadoo.fr", "Orange"),
];

/// The provider of a mail server's host name, if it is one of the known ones.
pub fn provider_of_host(host: &str) -> Option<&'static str> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    MX_SUFFIXES.iter().find_map(|(suffix, name)| {
        let inside = host == *suffix
            || host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.ends_with('.'));
        inside.then_some(*name)
    })
}

/// The provider of an address's domain: by its mail server's name when one is known, else by
/// the domain if it is a well-known consumer domain.
pub fn provider_of(domain: &str, mail_server: Option<&str>) -> Option<&'static str> {
    mail_server
        .and_then(host_of)
        .and_then(|h| provider_of_host(&h))
        .or_else(|| {
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            DOMAINS
                .iter()
                .find_map(|(d, name)| (*d == domain).then_some(*name))
        })
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

    #[test]
    fn mail_servers_are_known_by_their_suffix_on_a_label_boundary() {
        assert_eq!(
            provider_of_host("gmail-smtp-in.l.google.com."),
            Some("Google")
        );
        assert_eq!(
            provider_of_host("example-com.mail.protection.outlook.com"),
            Some("Microsoft")
        );
        assert_eq!(provider_of_host("mta7.am0.yahoodns.net"), Some("Yahoo/AOL"));
        assert_eq!(
            provider_of_host("mx0a-001.pphosted.com"),
            Some("Proofpoint")
        );
        assert_eq!(provider_of_host("notgoogle.com"), None);
        assert_eq!(provider_of_host("mx.example.com"), None);
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
        assert_eq!(provider_of("hotmail.com", None), Some("Microsoft"));
        assert_eq!(
            provider_of("Hotmail.COM.", Some("192.0.2.1")),
            Some("Microsoft")
        );
        assert_eq!(provider_of("example.org", Some("[192.0.2.1]")), None);
        assert_eq!(provider_of("example.org", None), None);
    }
}
