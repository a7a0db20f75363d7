//! PORT/PASV and EPRT/EPSV codecs on arbitrary arguments: no panic, and every accepted address
//! formats back to text that parses to the same address (PASV's reply body with PORT's parser,
//! EPRT with any legal delimiter).

#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use ringftpd::proto::addr::{
    EpsvArg, canonical_ip, format_epsv, format_pasv, net_prt, parse_eprt, parse_epsv, parse_port,
};

/// The `h1,...,p2` inside a 227 reply body.
fn pasv_fields(body: &str) -> &str {
    let open = body.find('(').expect("227 body has '('");
    let close = body.find(')').expect("227 body has ')'");
    &body[open + 1..close]
}

fuzz_target!(|arg: &[u8]| {
    if let Ok(addr) = parse_port(arg) {
        assert_ne!(addr.port(), 0);
        let body = format_pasv(addr);
        assert_eq!(
            parse_port(pasv_fields(&body).as_bytes()),
            Ok(addr),
            "{body}"
        );
    }
    if let Ok(addr) = parse_eprt(arg) {
        assert_ne!(addr.port(), 0);
        let proto = if addr.is_ipv4() { 1 } else { 2 };
        // Any delimiter in 33..=126 that cannot occur in the fields works.
        let d = arg
            .iter()
            .copied()
            .find(|b| (33..=126).contains(b) && !b.is_ascii_hexdigit() && !b":.".contains(b))
            .unwrap_or(b'|') as char;
        let text = format!("{d}{proto}{d}{}{d}{}{d}", addr.ip(), addr.port());
        assert_eq!(parse_eprt(text.as_bytes()), Ok(addr), "{text}");
        assert!(net_prt(canonical_ip(addr.ip())) <= 2);
    }
    match parse_epsv(arg) {
        Ok(EpsvArg::Proto(p)) => assert!(p == 1 || p == 2),
        Ok(_) | Err(_) => {}
    }
    // Any address and port formats into a reply PORT's parser reads back.
    if let [a, b, c, d, p1, p2, ..] = *arg {
        let port = u16::from_be_bytes([p1, p2]);
        let addr = SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port);
        let body = format_pasv(addr);
        let back = parse_port(pasv_fields(&body).as_bytes());
        if port == 0 {
            assert!(back.is_err());
        } else {
            assert_eq!(back, Ok(addr));
        }
        let epsv = format_epsv(port);
        assert!(epsv.ends_with(&format!("(|||{port}|)")), "{epsv}");
    }
});
