//! The RTSP `Transport` header (RFC 2326 §12.39): choosing one of the client's alternatives and
//! formatting our reply.
//!
//! Owns: what transports rillcast serves — unicast RTP/AVP over UDP to the RTSP peer's own
//! address, or interleaved in the RTSP TCP connection (§10.12). Must not: allocate channels or
//! ports (the session does), touch sockets, or allow UDP to be sent anywhere but the peer
//! (a `destination=` elsewhere would make us a traffic reflector; §12.39 lets servers refuse).

use std::fmt::Write as _;
use std::net::IpAddr;

/// The transport the client asked for, after validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportRequest {
    /// `RTP/AVP[/UDP];unicast;client_port=rtp-rtcp`.
    Udp { client_rtp: u16, client_rtcp: u16 },
    /// `RTP/AVP/TCP;interleaved=rtp-rtcp`; `None` when the client left it to the server.
    Interleaved { channels: Option<(u8, u8)> },
}

/// Why no alternative was usable. Every variant is answered with 461 Unsupported Transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// Header empty or absent.
    Missing,
    /// Not RTP/AVP, RTP/AVP/UDP or RTP/AVP/TCP (e.g. RTP/SAVP, RAW/RAW/UDP).
    UnsupportedProfile,
    /// `multicast` asked for; we only do unicast.
    Multicast,
    /// `destination=` names an address other than the RTSP peer.
    Destination,
    /// `mode` other than PLAY (we accept no RECORD).
    Mode,
    /// UDP without `client_port`, or a malformed port / channel range.
    BadParameter,
}

/// Picks the first alternative (comma-separated, in the client's order of preference,
/// RFC 2326 §12.39) that we support. `peer_ip` is the RTSP connection's remote address.
/// When none is usable, the error of the first alternative is returned.
pub fn parse_transport(header: &str, peer_ip: IpAddr) -> Result<TransportRequest, TransportError> {
    let mut first_err = None;
    for alt in header.split(',') {
        let alt = alt.trim();
        if alt.is_empty() {
            continue;
        }
        match parse_alternative(alt, peer_ip) {
            Ok(t) => return Ok(t),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(TransportError::Missing))
}

fn parse_alternative(alt: &str, peer_ip: IpAddr) -> Result<TransportRequest, TransportError> {
    let mut params = alt.split(';');
    let spec = params.next().unwrap_or("").trim();
    let tcp = if spec.eq_ignore_ascii_case("RTP/AVP") || spec.eq_ignore_ascii_case("RTP/AVP/UDP") {
        false
    } else if spec.eq_ignore_ascii_case("RTP/AVP/TCP") {
        true
    } else {
        return Err(TransportError::UnsupportedProfile);
    };
    let mut client_port = None;
    let mut interleaved = None;
    for param in params {
        let param = param.trim();
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        if name.eq_ignore_ascii_case("multicast") {
            return Err(TransportError::Multicast);
        } else if name.eq_ignore_ascii_case("destination") {
            // A bare `destination` means "the address the request came from" (§12.39).
            if let Some(v) = value {
                let ip: IpAddr = v.parse().map_err(|_| TransportError::Destination)?;
                if !same_ip(ip, peer_ip) {
                    return Err(TransportError::Destination);
                }
            }
        } else if name.eq_ignore_ascii_case("mode") {
            if !value.is_some_and(|v| v.eq_ignore_ascii_case("PLAY")) {
                return Err(TransportError::Mode);
            }
        } else if name.eq_ignore_ascii_case("client_port") {
            let (a, b) = parse_range(value.unwrap_or(""), u16::MAX as u32)?;
            if a == 0 {
                return Err(TransportError::BadParameter);
            }
            // Both fit u16: parse_range bounds them by u16::MAX.
            client_port = Some((a as u16, b as u16));
        } else if name.eq_ignore_ascii_case("interleaved") {
            let (a, b) = parse_range(value.unwrap_or(""), u8::MAX as u32)?;
            // Both fit u8: parse_range bounds them by u8::MAX.
            interleaved = Some((a as u8, b as u8));
        }
        // unicast, ttl, ssrc, source, port, layers, append: nothing to do. A missing
        // unicast/multicast means multicast per §12.39, but every client that omits it wants
        // unicast from a unicast server, so it is treated as unicast.
    }
    if tcp {
        Ok(TransportRequest::Interleaved {
            channels: interleaved,
        })
    } else {
        let (client_rtp, client_rtcp) = client_port.ok_or(TransportError::BadParameter)?;
        Ok(TransportRequest::Udp {
            client_rtp,
            client_rtcp,
        })
    }
}

/// `a-b` (b != a) or a single `a` meaning `a-(a+1)`, both at most `max`.
fn parse_range(v: &str, max: u32) -> Result<(u32, u32), TransportError> {
    let num = |s: &str| -> Result<u32, TransportError> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TransportError::BadParameter);
        }
        let n: u32 = s.parse().map_err(|_| TransportError::BadParameter)?;
        if n > max {
            return Err(TransportError::BadParameter);
        }
        Ok(n)
    };
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let a = num(v)?;
            if a >= max {
                return Err(TransportError::BadParameter);
            }
            (a, a + 1)
        }
    };
    if a == b {
        return Err(TransportError::BadParameter);
    }
    Ok((a, b))
}

/// IPv4 and IPv4-mapped IPv6 forms of one address compare equal.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    canon(a) == canon(b)
}

/// The transport finally set up for one track, as echoed in the reply (§12.39).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportReply {
    Udp {
        client_ports: (u16, u16),
        server_ports: (u16, u16),
    },
    Interleaved {
        channels: (u8, u8),
    },
}

/// Formats the reply `Transport` value:
/// `RTP/AVP;unicast;client_port=a-b;server_port=c-d;ssrc=XXXXXXXX;mode=play` or
/// `RTP/AVP/TCP;unicast;interleaved=a-b;ssrc=XXXXXXXX` (ssrc as 8 hex digits, §12.39).
pub fn format_reply(reply: TransportReply, ssrc: u32) -> String {
    let mut s = String::with_capacity(96);
    // Writing into a String cannot fail.
    let _ = match reply {
        TransportReply::Udp {
            client_ports,
            server_ports,
        } => write!(
            s,
            "RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={:08X};mode=play",
            client_ports.0, client_ports.1, server_ports.0, server_ports.1, ssrc
        ),
        TransportReply::Interleaved { channels } => write!(
            s,
            "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={:08X}",
            channels.0, channels.1, ssrc
        ),
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[test]
    fn ffmpeg_and_gstreamer_forms() {
        // Values copied from tests/fixtures/rtsp/{ffmpeg,gstreamer}_setup_*.txt.
        assert_eq!(
            parse_transport("RTP/AVP/UDP;unicast;client_port=27110-27111", PEER),
            Ok(TransportRequest::Udp {
                client_rtp: 27110,
                client_rtcp: 27111
            })
        );
        assert_eq!(
            parse_transport("RTP/AVP;unicast;client_port=51992-51993", PEER),
            Ok(TransportRequest::Udp {
                client_rtp: 51992,
                client_rtcp: 51993
            })
        );
        assert_eq!(
            parse_transport("RTP/AVP/TCP;unicast;interleaved=2-3", PEER),
            Ok(TransportRequest::Interleaved {
                channels: Some((2, 3))
            })
        );
    }

    #[test]
    fn tcp_without_interleaved_leaves_channels_to_server() {
        assert_eq!(
            parse_transport("RTP/AVP/TCP;unicast", PEER),
            Ok(TransportRequest::Interleaved { channels: None })
        );
    }

    #[test]
    fn first_supported_alternative_wins() {
        let h = "RTP/SAVP;unicast;client_port=5000-5001, RTP/AVP;multicast, \
                 RTP/AVP/TCP;interleaved=4-5, RTP/AVP;unicast;client_port=6000-6001";
        assert_eq!(
            parse_transport(h, PEER),
            Ok(TransportRequest::Interleaved {
                channels: Some((4, 5))
            })
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(parse_transport("", PEER), Err(TransportError::Missing));
        assert_eq!(
            parse_transport("RTP/AVP;multicast;client_port=5000-5001", PEER),
            Err(TransportError::Multicast)
        );
        assert_eq!(
            parse_transport(
                "RTP/AVP;unicast;destination=10.0.0.9;client_port=5000-5001",
                PEER
            ),
            Err(TransportError::Destination)
        );
        assert_eq!(
            parse_transport("RTP/AVP;unicast;client_port=5000-5001;mode=RECORD", PEER),
            Err(TransportError::Mode)
        );
        assert_eq!(
            parse_transport("RTP/AVP;unicast", PEER),
            Err(TransportError::BadParameter)
        );
        assert_eq!(
            parse_transport("RTP/AVP;unicast;client_port=70000-70001", PEER),
            Err(TransportError::BadParameter)
        );
        assert_eq!(
            parse_transport("RTP/AVP/TCP;interleaved=256-257", PEER),
            Err(TransportError::BadParameter)
        );
        assert_eq!(
            parse_transport("RAW/RAW/UDP;unicast;client_port=5000", PEER),
            Err(TransportError::UnsupportedProfile)
        );
    }

    #[test]
    fn accepted_variants() {
        // destination equal to the peer (also as IPv4-mapped IPv6), quoted mode, single port.
        assert_eq!(
            parse_transport(
                "RTP/AVP;unicast;destination=127.0.0.1;client_port=5000;mode=\"PLAY\"",
                PEER
            ),
            Ok(TransportRequest::Udp {
                client_rtp: 5000,
                client_rtcp: 5001
            })
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            parse_transport("RTP/AVP;unicast;destination;client_port=5000-5001", mapped),
            Ok(TransportRequest::Udp {
                client_rtp: 5000,
                client_rtcp: 5001
            })
        );
        assert_eq!(
            parse_transport("rtp/avp/udp;unicast;client_port=5000-5001", mapped),
            Ok(TransportRequest::Udp {
                client_rtp: 5000,
                client_rtcp: 5001
            })
        );
    }

    #[test]
    fn reply_format() {
        assert_eq!(
            format_reply(
                TransportReply::Udp {
                    client_ports: (27110, 27111),
                    server_ports: (6970, 6971)
                },
                0x1234abcd
            ),
            "RTP/AVP;unicast;client_port=27110-27111;server_port=6970-6971;ssrc=1234ABCD;mode=play"
        );
        assert_eq!(
            format_reply(TransportReply::Interleaved { channels: (0, 1) }, 0xff),
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=000000FF"
        );
    }
}
