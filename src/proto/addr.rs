//! Data-connection address codecs: PORT/PASV (RFC 959) and EPRT/EPSV (RFC 2428), as pure functions on bytes.
//!
//! Only `std::net` address *values* are used; nothing here opens a socket. Parsers are strict (exact field
//! counts, decimal digits only, no signs) because these arguments decide where the server connects to,
//! and RFC 2577 warns that a lax parser helps bounce attacks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// Why an address argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// Malformed argument: the caller replies 501.
    Syntax,
    /// A well-formed but unknown network protocol number: the caller replies 522 (RFC 2428 sections 2 and 3).
    UnsupportedProtocol,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrError::Syntax => "syntax error in address argument",
            AddrError::UnsupportedProtocol => "network protocol not supported",
        })
    }
}

impl std::error::Error for AddrError {}

/// Parse 1..=`max_digits` ASCII decimal digits (no sign, no spaces) into a number.
fn parse_dec(s: &[u8], max_digits: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_digits || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')))
}

/// A protocol number field (EPRT net-prt, EPSV argument): all digits, any length. `None` if not numeric;
/// huge values saturate to 255, which is just another unsupported protocol.
fn parse_proto(s: &[u8]) -> Option<u8> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s
        .iter()
        .fold(0u32, |n, &d| (n * 10 + u32::from(d - b'0')).min(256));
    Some(u8::try_from(n).unwrap_or(u8::MAX))
}

/// RFC 959 PORT argument `h1,h2,h3,h4,p1,p2` (decimal 0-255 each, optional surrounding spaces tolerated)
/// -> IPv4 socket address. Port 0 is refused: nothing can be listening there.
pub fn parse_port(arg: &[u8]) -> Result<SocketAddrV4, AddrError> {
    let mut fields = [0u8; 6];
    // Blanks only around the whole argument: RFC 959 section 4.1.2 defines no spaces between the fields.
    let mut parts = arg.trim_ascii().split(|&b| b == b',');
    for slot in &mut fields {
        let part = parts.next().ok_or(AddrError::Syntax)?;
        let n = parse_dec(part, 3).ok_or(AddrError::Syntax)?;
        *slot = u8::try_from(n).map_err(|_| AddrError::Syntax)?;
    }
    if parts.next().is_some() {
        return Err(AddrError::Syntax);
    }
    let [h1, h2, h3, h4, p1, p2] = fields;
    let port = u16::from_be_bytes([p1, p2]);
    if port == 0 {
        return Err(AddrError::Syntax);
    }
    Ok(SocketAddrV4::new(Ipv4Addr::new(h1, h2, h3, h4), port))
}

/// The 227 reply body for PASV: "Entering Passive Mode (h1,h2,h3,h4,p1,p2)." (RFC 959 section 4.2.2).
/// Same byte order as PORT: p1 is the high byte of the port, p2 the low byte.
pub fn format_pasv(addr: SocketAddrV4) -> String {
    let [h1, h2, h3, h4] = addr.ip().octets();
    let [p1, p2] = addr.port().to_be_bytes();
    format!("Entering Passive Mode ({h1},{h2},{h3},{h4},{p1},{p2}).")
}

/// RFC 2428 EPRT argument `<d><net-prt><d><net-addr><d><tcp-port><d>`: the delimiter is any ASCII 33..=126
/// char (usually '|'); net-prt "1" = IPv4 dotted, "2" = IPv6 text; any other protocol number ->
/// `UnsupportedProtocol`; malformed -> `Syntax`; port 0 -> `Syntax`.
pub fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, AddrError> {
    // Surrounding blanks are tolerated (some clients pad); space is not a legal delimiter anyway.
    let arg = arg.trim_ascii();
    let (&d, rest) = arg.split_first().ok_or(AddrError::Syntax)?;
    // RFC 2428 section 2: "The delimiter character MUST be one of the ASCII characters in range 33-126".
    if !(33..=126).contains(&d) {
        return Err(AddrError::Syntax);
    }
    let body = rest.strip_suffix(&[d]).ok_or(AddrError::Syntax)?;
    let mut fields = body.split(|&b| b == d);
    let (Some(prt), Some(host), Some(tcp_port), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(AddrError::Syntax);
    };
    let proto = parse_proto(prt).ok_or(AddrError::Syntax)?;
    let host = std::str::from_utf8(host).map_err(|_| AddrError::Syntax)?;
    // std's parsers are strict: no leading-zero octets, no IPv6 zone ids, no trailing junk.
    let ip = match proto {
        1 => IpAddr::V4(host.parse::<Ipv4Addr>().map_err(|_| AddrError::Syntax)?),
        2 => IpAddr::V6(host.parse::<Ipv6Addr>().map_err(|_| AddrError::Syntax)?),
        _ => return Err(AddrError::UnsupportedProtocol),
    };
    let port = parse_dec(tcp_port, 5)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or(AddrError::Syntax)?;
    Ok(SocketAddr::new(ip, port))
}

/// The 229 reply text: "Entering Extended Passive Mode (|||port|)" (RFC 2428 section 3: the address is
/// omitted, the client reuses the control connection's).
pub fn format_epsv(port: u16) -> String {
    format!("Entering Extended Passive Mode (|||{port}|)")
}

/// A parsed EPSV argument (RFC 2428 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: passive mode on the control connection's protocol.
    Any,
    /// "EPSV ALL" (RFC 2428 section 4): from now on only EPSV is allowed (PORT, PASV, EPRT must be refused).
    All,
    /// An explicit network protocol number, 1 (IPv4) or 2 (IPv6).
    Proto(u8),
}

/// EPSV argument: empty -> Any, "ALL" (case-insensitive) -> All, "1"/"2" -> Proto; other numbers ->
/// `UnsupportedProtocol`; garbage -> `Syntax`.
pub fn parse_epsv(arg: &[u8]) -> Result<EpsvArg, AddrError> {
    let arg = arg.trim_ascii();
    if arg.is_empty() {
        return Ok(EpsvArg::Any);
    }
    if arg.eq_ignore_ascii_case(b"ALL") {
        return Ok(EpsvArg::All);
    }
    match parse_proto(arg).ok_or(AddrError::Syntax)? {
        p @ (1 | 2) => Ok(EpsvArg::Proto(p)),
        _ => Err(AddrError::UnsupportedProtocol),
    }
}

/// The RFC 2428 protocol number for an address family: 1 for IPv4, 2 for IPv6. An IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`) counts as IPv4, since that is what a dual-stack socket reports for an IPv4 peer.
pub fn net_prt(ip: IpAddr) -> u8 {
    match canonical_ip(ip) {
        IpAddr::V4(_) => 1,
        IpAddr::V6(_) => 2,
    }
}

/// Canonical form for comparing a data-connection peer with the control peer (RFC 2577 bounce-attack and
/// port-stealing checks): IPv4-mapped IPv6 addresses become IPv4, so one host cannot look like two.
/// IPv4-compatible (`::a.b.c.d`, deprecated) addresses are left as IPv6.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddrError::{Syntax, UnsupportedProtocol as Unsupported};
    use proptest::prelude::*;

    fn v4(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), port)
    }

    #[test]
    fn port_valid() {
        assert_eq!(parse_port(b"127,0,0,1,4,1"), Ok(v4([127, 0, 0, 1], 1025)));
        assert_eq!(
            parse_port(b"  10,0,0,255,255,255 "),
            Ok(v4([10, 0, 0, 255], 65535))
        );
        assert_eq!(parse_port(b"0,0,0,0,0,1"), Ok(v4([0, 0, 0, 0], 1)));
        assert_eq!(
            parse_port(b"001,002,003,004,000,021"),
            Ok(v4([1, 2, 3, 4], 21))
        );
    }

    #[test]
    fn port_invalid() {
        for bad in [
            &b""[..],
            b"   ",
            b"127,0,0,1,4",
            b"127,0,0,1,4,1,9",
            b"127,0,0,1,4,1,",
            b",127,0,0,1,4,1",
            b"127,,0,1,4,1",
            b"256,0,0,1,4,1",
            b"127,0,0,1,4,256",
            b"127,0,0,1,4,1000",
            b"127,0,0,1,4,0001",
            b"+127,0,0,1,4,1",
            b"127,0,0,-1,4,1",
            b"127, 0,0,1,4,1",
            b"127,0 ,0,1,4,1",
            b"127.0.0.1,4,1",
            b"a,b,c,d,e,f",
            b"127,0,0,1,0,0",
            b"\xff,0,0,1,4,1",
        ] {
            assert_eq!(parse_port(bad), Err(Syntax), "{bad:?}");
        }
    }

    #[test]
    fn pasv_format() {
        assert_eq!(
            format_pasv(v4([192, 168, 1, 2], 21)),
            "Entering Passive Mode (192,168,1,2,0,21)."
        );
        assert_eq!(
            format_pasv(v4([10, 0, 0, 1], 50000)),
            "Entering Passive Mode (10,0,0,1,195,80)."
        );
        assert_eq!(
            format_pasv(v4([255, 255, 255, 255], 65535)),
            "Entering Passive Mode (255,255,255,255,255,255)."
        );
    }

    #[test]
    fn eprt_rfc_examples() {
        assert_eq!(
            parse_eprt(b"|1|132.235.1.2|6275|"),
            Ok("132.235.1.2:6275".parse().unwrap())
        );
        assert_eq!(
            parse_eprt(b"|2|1080::8:800:200C:417A|5282|"),
            Ok("[1080::8:800:200C:417A]:5282".parse().unwrap())
        );
    }

    #[test]
    fn eprt_other_delimiters_and_spaces() {
        let want: SocketAddr = "10.1.2.3:65535".parse().unwrap();
        assert_eq!(parse_eprt(b"!1!10.1.2.3!65535!"), Ok(want));
        assert_eq!(parse_eprt(b"~1~10.1.2.3~65535~"), Ok(want));
        assert_eq!(parse_eprt(b" |1|10.1.2.3|65535| "), Ok(want));
        assert_eq!(parse_eprt(b"#2#::1#21#"), Ok("[::1]:21".parse().unwrap()));
        // ':' is a legal delimiter, but it cannot frame an IPv6 address (RFC 2428 recommends '|' for that reason).
        assert_eq!(parse_eprt(b":2:::1:21:"), Err(Syntax));
    }

    #[test]
    fn eprt_errors() {
        assert_eq!(parse_eprt(b"|3|1.2.3.4|21|"), Err(Unsupported));
        assert_eq!(parse_eprt(b"|0|1.2.3.4|21|"), Err(Unsupported));
        assert_eq!(parse_eprt(b"|99999999999|1.2.3.4|21|"), Err(Unsupported));
        for bad in [
            &b""[..],
            b"|",
            b"||||",
            b"|1|1.2.3.4|21",
            b"|1|1.2.3.4|21||",
            b"|1|1.2.3.4|21|x|",
            b"|1|1.2.3.4|",
            b"|2|1.2.3.4|21|",
            b"|1|::1|21|",
            b"|1|1.2.3.4|0|",
            b"|1|1.2.3.4|65536|",
            b"|1|1.2.3.4|+21|",
            b"|1|1.2.3.4|-21|",
            b"|1|1.2.3.4| 21|",
            b"|1|1.2.3.4|000021|",
            b"|1| 1.2.3.4|21|",
            b"|1|1.2.3.256|21|",
            b"|1|01.2.3.4|21|",
            b"|2|fe80::1%eth0|21|",
            b"|x|1.2.3.4|21|",
            b"||1.2.3.4|21|",
            b"|+1|1.2.3.4|21|",
            b"\x7f1\x7f1.2.3.4\x7f21\x7f",
            b"\x001\x001.2.3.4\x0021\x00",
            b"|1|1.2.3.\xff|21|",
        ] {
            assert_eq!(parse_eprt(bad), Err(Syntax), "{bad:?}");
        }
    }

    #[test]
    fn epsv_format() {
        assert_eq!(
            format_epsv(6446),
            "Entering Extended Passive Mode (|||6446|)"
        );
        assert_eq!(
            format_epsv(65535),
            "Entering Extended Passive Mode (|||65535|)"
        );
    }

    #[test]
    fn epsv_args() {
        assert_eq!(parse_epsv(b""), Ok(EpsvArg::Any));
        assert_eq!(parse_epsv(b"  "), Ok(EpsvArg::Any));
        assert_eq!(parse_epsv(b"ALL"), Ok(EpsvArg::All));
        assert_eq!(parse_epsv(b"aLl"), Ok(EpsvArg::All));
        assert_eq!(parse_epsv(b"1"), Ok(EpsvArg::Proto(1)));
        assert_eq!(parse_epsv(b"2"), Ok(EpsvArg::Proto(2)));
        assert_eq!(parse_epsv(b"3"), Err(Unsupported));
        assert_eq!(parse_epsv(b"0"), Err(Unsupported));
        assert_eq!(parse_epsv(b"1000000000000"), Err(Unsupported));
        for bad in [&b"ALLX"[..], b"AL", b"-1", b"+2", b"1 2", b"|1|", b"\xff"] {
            assert_eq!(parse_epsv(bad), Err(Syntax), "{bad:?}");
        }
    }

    #[test]
    fn families() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let lo4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(canonical_ip(mapped), lo4);
        assert_eq!(canonical_ip(lo4), lo4);
        assert_eq!(
            canonical_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        let compat: IpAddr = "::127.0.0.1".parse().unwrap();
        assert_eq!(canonical_ip(compat), compat);
        assert_eq!(net_prt(lo4), 1);
        assert_eq!(net_prt(mapped), 1);
        assert_eq!(net_prt(IpAddr::V6(Ipv6Addr::LOCALHOST)), 2);
    }

    #[test]
    fn error_display() {
        assert_eq!(
            AddrError::Syntax.to_string(),
            "syntax error in address argument"
        );
        let e: &dyn std::error::Error = &AddrError::UnsupportedProtocol;
        assert_eq!(e.to_string(), "network protocol not supported");
    }

    proptest! {
        #[test]
        fn parsers_never_panic(arg in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_port(&arg);
            let _ = parse_eprt(&arg);
            let _ = parse_epsv(&arg);
        }

        #[test]
        fn pasv_port_roundtrip(ip in any::<[u8; 4]>(), port in 1u16..) {
            let addr = v4(ip, port);
            let text = format_pasv(addr);
            let inner = &text[text.find('(').unwrap() + 1..text.find(')').unwrap()];
            prop_assert_eq!(parse_port(inner.as_bytes()), Ok(addr));
        }

        #[test]
        fn eprt_roundtrip(ip in any::<IpAddr>(), port in 1u16..) {
            let arg = format!("|{}|{ip}|{port}|", if ip.is_ipv4() { 1 } else { 2 });
            prop_assert_eq!(parse_eprt(arg.as_bytes()), Ok(SocketAddr::new(ip, port)));
        }

        #[test]
        fn epsv_reply_port_roundtrip(port in any::<u16>()) {
            let text = format_epsv(port);
            let inner = &text[text.find("|||").unwrap() + 3..text.rfind('|').unwrap()];
            prop_assert_eq!(inner.parse::<u16>().unwrap(), port);
        }
    }
}
