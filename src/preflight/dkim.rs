//! DKIM key records (RFC 6376 §3.6.1) at `<selector>._domainkey.<domain>`: the tags, the key
//! type and size (an RSA key's size from its SubjectPublicKeyInfo), revocation and the testing
//! flag. Pure.

use base64::Engine as _;
use spki::der::Decode as _;

/// RSA keys shorter than this fail: receivers ignore them (RFC 8301 §3.2).
pub const MIN_RSA_BITS: u32 = 1024;
/// RSA keys shorter than this get a warning: 2048 bits is what providers ask for now.
pub const GOOD_RSA_BITS: u32 = 2048;

/// A parsed key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    /// `k=`, `rsa` by default.
    pub key_type: String,
    /// The key size: an RSA modulus's bits, 256 for ed25519; None when revoked.
    pub bits: Option<u32>,
    /// `p=` empty: the key is withdrawn and every signature with it fails.
    pub revoked: bool,
    /// `t=y`: receivers treat this domain's signatures as unsigned mail when they fail.
    pub testing: bool,
}

/// The tags of a DKIM tag list (`v=DKIM1; k=rsa; p=…`), folding white space away; an error
/// for a duplicate tag or a malformed one.
pub fn tags(record: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for spec in record.split(';') {
        if spec.trim().is_empty() {
            continue;
        }
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("{:?} is not tag=value", spec.trim()))?;
        let name = name.trim();
        let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!("{name:?} is not a tag name"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("the tag {name} appears twice"));
        }
        let value: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Whether a TXT record at a selector looks like a key record: `v=DKIM1` first, or no `v=`
/// but a `p=` tag (`v=` is optional, RFC 6376 §3.6.1).
pub fn is_key_record(record: &str) -> bool {
    let squeezed: String = record.chars().filter(|c| !c.is_whitespace()).collect();
    squeezed.starts_with("v=DKIM1") || (!squeezed.starts_with("v=") && squeezed.contains("p="))
}

/// Parses a key record.
pub fn parse(record: &str) -> Result<DkimKey, String> {
    let tags = tags(record)?;
    if let Some(version) = tag(&tags, "v") {
        if tags[0].0 != "v" {
            return Err("v= must be the first tag".into());
        }
        if version != "DKIM1" {
            return Err(format!("v={version}, not DKIM1"));
        }
    }
    let key_type = tag(&tags, "k").unwrap_or("rsa").to_ascii_lowercase();
    let testing = tag(&tags, "t")
        .is_some_and(|flags| flags.split(':').any(|f| f.trim().eq_ignore_ascii_case("y")));
    let p = tag(&tags, "p").ok_or("no p= tag (the public key)")?;
    let encoded: String = p.chars().filter(|c| !c.is_whitespace()).collect();
    if encoded.is_empty() {
        return Ok(DkimKey {
            key_type,
            bits: None,
            revoked: true,
            testing,
        });
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(&encoded)
        .map_err(|e| format!("p= is not base64: {e}"))?;
    let bits = match key_type.as_str() {
        "rsa" => rsa_bits(&der)?,
        // RFC 8463: the raw 32-byte public key.
        "ed25519" if der.len() == 32 => 256,
        "ed25519" => return Err(format!("an ed25519 key is 32 bytes, not {}", der.len())),
        other => return Err(format!("unknown key type k={other}")),
    };
    Ok(DkimKey {
        key_type,
        bits: Some(bits),
        revoked: false,
        testing,
    })
}

/// The modulus size of an RSA key given as SubjectPublicKeyInfo (what RFC 6376 prescribes),
/// or as a bare PKCS#1 RSAPublicKey (which some publishers use and most verifiers accept).
fn rsa_bits(der: &[u8]) -> Result<u32, String> {
    const RSA_ENCRYPTION: spki::ObjectIdentifier =
        spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    let pkcs1 = match spki::SubjectPublicKeyInfoRef::from_der(der) {
        Ok(info) if info.algorithm.oid == RSA_ENCRYPTION => info
            .subject_public_key
            .as_bytes()
            .ok_or("the key's bit string is not whole bytes")?,
        Ok(info) => {
            return Err(format!(
                "the key is not an RSA key (algorithm {})",
                info.algorithm.oid
            ));
        }
        Err(_) => der,
    };
    let key = pkcs1::RsaPublicKeyRef::from_der(pkcs1)
        .map_err(|e| format!("p= is not an RSA public key: {e}"))?;
    let modulus = key.modulus.as_bytes();
    let Some(first) = modulus.first() else {
        return Err("the RSA modulus is zero".into());
    };
    Ok((modulus.len() as u32 - 1) * 8 + (8 - first.leading_zeros()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Public halves of real keys made with `openssl genpkey -algorithm RSA` (the lab zone
    /// has the same two), base64 SubjectPublicKeyInfo.
    const RSA_1024: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDQTBgGfJuvMm+PmEqrT3yLDw0d8n7Lg+4wh1vaAIg7m0yGSzsap+Wd9AdjXHBCDp6Iy1VcTdvEparN0+0LfQXUdDG7wZ+IoHIxWCfCi3ZuYPUeAzUoyMy3XRJe7kyznp2OiC5R0rjlpoULs5dxrYo6k1yQIOmxKVK+A4rWcx4LSwIDAQAB";
    const RSA_2048: &str = include_str!("../../tests/data/dkim-2048.b64");

    #[test]
    fn rsa_key_sizes_come_from_the_modulus() {
        let key = parse(&format!("v=DKIM1; k=rsa; p={RSA_1024}")).unwrap();
        assert_eq!(key.bits, Some(1024));
        assert_eq!(key.key_type, "rsa");
        assert!(!key.revoked && !key.testing);
        let key = parse(&format!("v=DKIM1; p={}", RSA_2048.trim())).unwrap();
        assert_eq!(key.bits, Some(2048));
    }

    #[test]
    fn a_key_split_over_strings_and_folded_still_parses() {
        let (a, b) = RSA_1024.split_at(60);
        let key = parse(&format!("v=DKIM1;\tk=rsa;\n p={a} {b} ;")).unwrap();
        assert_eq!(key.bits, Some(1024));
    }

    #[test]
    fn a_bare_pkcs1_key_is_accepted() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(RSA_1024)
            .unwrap();
        // The RSAPublicKey inside the SubjectPublicKeyInfo: after its 22-byte header.
        let bare = base64::engine::general_purpose::STANDARD.encode(&der[22..]);
        assert_eq!(parse(&format!("p={bare}")).unwrap().bits, Some(1024));
    }

    #[test]
    fn an_empty_p_is_revoked() {
        let key = parse("v=DKIM1; k=rsa; p=").unwrap();
        assert!(key.revoked);
        assert_eq!(key.bits, None);
    }

    #[test]
    fn t_y_is_testing() {
        let key = parse(&format!("v=DKIM1; t=s:y; p={RSA_1024}")).unwrap();
        assert!(key.testing);
        let key = parse(&format!("v=DKIM1; t=s; p={RSA_1024}")).unwrap();
        assert!(!key.testing);
    }

    #[test]
    fn ed25519_keys_are_32_bytes() {
        let raw = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let key = parse(&format!("v=DKIM1; k=ed25519; p={raw}")).unwrap();
        assert_eq!((key.key_type.as_str(), key.bits), ("ed25519", Some(256)));
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        assert!(parse(&format!("k=ed25519; p={short}")).is_err());
    }

    #[test]
    fn malformed_records_are_errors() {
        for record in [
            "v=DKIM1; k=rsa",
            "v=DKIM2; p=abc",
            "k=rsa; v=DKIM1; p=",
            "v=DKIM1; p=not*base64",
            "v=DKIM1; p=AAAA",
            "v=DKIM1; k=dsa; p=AAAA",
            "v=DKIM1; p=; p=",
            "v=DKIM1; junk; p=",
            "v=DKIM1; 1x=y; p=",
        ] {
            assert!(parse(record).is_err(), "{record}");
        }
    }

    #[test]
    fn key_records_are_told_from_other_txt_records() {
        assert!(is_key_record("v=DKIM1; p=abc"));
        assert!(is_key_record("k=rsa; p=abc"));
        assert!(!is_key_record("v=spf1 -all"));
        assert!(!is_key_record("google-site-verification=x"));
    }
}
