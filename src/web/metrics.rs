//! `/metrics`: the status snapshot in the Prometheus text exposition format (version 0.0.4).
//!
//! Owns: metric names, help lines and label escaping. Renders into a caller-owned `String`
//! that is cleared and reused, so a scrape costs no allocation once the buffer has grown.
//! Must not: compute anything itself — every figure comes from the [`Status`] snapshot.

use super::events::WebhookStats;
use super::status::Status;
use std::fmt::Write;

/// Content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Extra server-wide counters that are not part of the page's snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerCounters {
    pub rtsp_connections: u64,
    pub rtsp_connections_refused: u64,
    pub rtsp_bad_requests: u64,
    pub rtsp_timeouts: u64,
    pub rtsp_auth_failures: u64,
    pub rtsp_auth_throttled: u64,
    pub rtsp_refused_per_address: u64,
    pub rtsp_request_timeouts: u64,
    pub rtsp_udp_ignored: u64,
    pub webhooks: WebhookStats,
    pub events: u64,
}

/// Writes `s` as a label value: backslash, double quote and newline escaped.
fn label(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn stream_metric(out: &mut String, name: &str, stream: &str, extra: Option<(&str, &str)>, v: f64) {
    out.push_str(name);
    out.push_str("{stream=\"");
    label(out, stream);
    out.push('"');
    if let Some((k, val)) = extra {
        let _ = write!(out, ",{k}=\"");
        label(out, val);
        out.push('"');
    }
    let _ = writeln!(out, "}} {v}");
}

/// Renders everything into `out` (cleared first).
pub fn render(out: &mut String, st: &Status, c: &ServerCounters) {
    out.clear();
    head(out, "rillcast_up", "gauge", "1 while the daemon runs.");
    let _ = writeln!(out, "rillcast_up 1");
    head(
        out,
        "rillcast_uptime_seconds",
        "counter",
        "Seconds since start.",
    );
    let _ = writeln!(out, "rillcast_uptime_seconds {}", st.uptime_s);
    head(
        out,
        "rillcast_media_memory_planned_bytes",
        "gauge",
        "Media memory allocated at start.",
    );
    let _ = writeln!(
        out,
        "rillcast_media_memory_planned_bytes {}",
        st.memory.planned_bytes
    );
    head(
        out,
        "rillcast_media_memory_ceiling_bytes",
        "gauge",
        "Declared media memory ceiling.",
    );
    let _ = writeln!(
        out,
        "rillcast_media_memory_ceiling_bytes {}",
        st.memory.ceiling_bytes
    );

    type Get = fn(&super::status::StreamStatus) -> f64;
    let per_stream: [(&str, &str, &str, Get); 10] = [
        (
            "rillcast_stream_live",
            "gauge",
            "1 when the stream has parameters and a keyframe.",
            |s| s.live as u8 as f64,
        ),
        (
            "rillcast_stream_ingest_bytes_total",
            "counter",
            "Media bytes received from the source.",
            |s| s.bytes as f64,
        ),
        (
            "rillcast_stream_ingest_video_frames_total",
            "counter",
            "Video access units received.",
            |s| s.video_frames as f64,
        ),
        (
            "rillcast_stream_ingest_audio_frames_total",
            "counter",
            "Audio frames received.",
            |s| s.audio_frames as f64,
        ),
        (
            "rillcast_stream_dropped_frames_total",
            "counter",
            "Frames dropped at ingest (larger than the ring allows).",
            |s| s.dropped_frames as f64,
        ),
        (
            "rillcast_stream_evicted_frames_total",
            "counter",
            "Frames overwritten in the ring.",
            |s| s.evicted_frames as f64,
        ),
        (
            "rillcast_stream_bitrate_kbps",
            "gauge",
            "Ingest bitrate over the last second.",
            |s| s.bitrate_kbps as f64,
        ),
        (
            "rillcast_stream_fps",
            "gauge",
            "Video frames per second over the last second.",
            |s| s.fps,
        ),
        (
            "rillcast_stream_source_restarts_total",
            "counter",
            "Times the source was restarted.",
            |s| s.source_restarts as f64,
        ),
        (
            "rillcast_stream_keyframe_interval_seconds",
            "gauge",
            "Time between the last two keyframes.",
            |s| s.keyframe_interval_ms.unwrap_or(0) as f64 / 1000.0,
        ),
    ];
    for (name, kind, help, get) in per_stream {
        head(out, name, kind, help);
        for s in &st.streams {
            stream_metric(out, name, &s.name, None, get(s));
        }
    }
    head(
        out,
        "rillcast_viewers",
        "gauge",
        "Viewers now, per stream and protocol.",
    );
    for s in &st.streams {
        for (p, n) in [
            ("rtsp", s.viewers.rtsp),
            ("hls", s.viewers.hls),
            ("rtmp_push", s.viewers.rtmp_push),
        ] {
            stream_metric(
                out,
                "rillcast_viewers",
                &s.name,
                Some(("protocol", p)),
                n as f64,
            );
        }
    }
    head(
        out,
        "rillcast_push_state",
        "gauge",
        "1 for the push target's current state.",
    );
    for p in &st.push {
        let _ = write!(out, "rillcast_push_state{{target=\"{}\",stream=\"", p.index);
        label(out, &p.stream);
        let _ = writeln!(out, "\",state=\"{}\"}} 1", p.state);
    }
    type PGet = fn(&super::status::PushStatus) -> u64;
    let per_push: [(&str, &str, PGet); 3] = [
        (
            "rillcast_push_reconnects_total",
            "Reconnections of the push target.",
            |p| p.reconnects,
        ),
        (
            "rillcast_push_bytes_total",
            "Bytes written to the origin.",
            |p| p.bytes_sent,
        ),
        (
            "rillcast_push_gops_dropped_total",
            "GOPs dropped because the uplink was slower than the stream.",
            |p| p.gops_dropped,
        ),
    ];
    for (name, help, get) in per_push {
        head(out, name, "counter", help);
        for p in &st.push {
            let _ = write!(out, "{name}{{target=\"{}\",stream=\"", p.index);
            label(out, &p.stream);
            let _ = writeln!(out, "\"}} {}", get(p));
        }
    }
    let server: [(&str, &str, u64); 13] = [
        (
            "rillcast_rtsp_connections_total",
            "RTSP connections accepted.",
            c.rtsp_connections,
        ),
        (
            "rillcast_rtsp_connections_refused_total",
            "RTSP connections refused at the cap.",
            c.rtsp_connections_refused,
        ),
        (
            "rillcast_rtsp_bad_requests_total",
            "Malformed RTSP requests.",
            c.rtsp_bad_requests,
        ),
        (
            "rillcast_rtsp_timeouts_total",
            "RTSP viewers dropped by timeout or stall.",
            c.rtsp_timeouts,
        ),
        (
            "rillcast_rtsp_auth_failures_total",
            "RTSP requests with wrong credentials.",
            c.rtsp_auth_failures,
        ),
        (
            "rillcast_rtsp_auth_throttled_total",
            "RTSP requests refused (403) while their address was locked out after failures.",
            c.rtsp_auth_throttled,
        ),
        (
            "rillcast_rtsp_connections_refused_per_address_total",
            "RTSP connections refused because their address held too many that do not play.",
            c.rtsp_refused_per_address,
        ),
        (
            "rillcast_rtsp_request_timeouts_total",
            "RTSP connections closed for not completing a request in time.",
            c.rtsp_request_timeouts,
        ),
        (
            "rillcast_rtsp_udp_ignored_total",
            "Datagrams at the RTP/RTCP ports from no viewer's address, or malformed.",
            c.rtsp_udp_ignored,
        ),
        (
            "rillcast_webhooks_delivered_total",
            "Webhook deliveries that got a 2xx.",
            c.webhooks.delivered,
        ),
        (
            "rillcast_webhooks_failed_total",
            "Webhook deliveries given up after retries.",
            c.webhooks.failed,
        ),
        (
            "rillcast_webhooks_dropped_total",
            "Webhook deliveries dropped because the queue was full.",
            c.webhooks.dropped_queue_full,
        ),
        ("rillcast_events_total", "Events recorded.", c.events),
    ];
    for (name, help, v) in server {
        head(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::status::{PushStatus, StreamStatus};

    fn status() -> Status {
        Status {
            uptime_s: 5,
            streams: vec![StreamStatus {
                name: "li\"ve".into(),
                live: true,
                bytes: 1234,
                viewers: crate::web::status::ProtocolCounts {
                    rtsp: 2,
                    hls: 0,
                    rtmp_push: 1,
                },
                ..Default::default()
            }],
            push: vec![PushStatus {
                index: 0,
                stream: "live".into(),
                state: "publishing",
                reconnects: 3,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn exposition_lines() {
        let mut out = String::new();
        render(&mut out, &status(), &ServerCounters::default());
        for want in [
            "rillcast_up 1\n",
            "rillcast_uptime_seconds 5\n",
            "rillcast_stream_ingest_bytes_total{stream=\"li\\\"ve\"} 1234\n",
            "rillcast_viewers{stream=\"li\\\"ve\",protocol=\"rtsp\"} 2\n",
            "rillcast_push_state{target=\"0\",stream=\"live\",state=\"publishing\"} 1\n",
            "rillcast_push_reconnects_total{target=\"0\",stream=\"live\"} 3\n",
            "# TYPE rillcast_stream_live gauge\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        // Every sample line is `name{labels} value` or `name value`; every name has a TYPE.
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (name_labels, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = name_labels.split('{').next().unwrap();
            assert!(out.contains(&format!("# TYPE {name} ")), "{line}");
        }
        // Reuse: rendering again into the same buffer gives the same text, no growth.
        let cap = out.capacity();
        let first = out.clone();
        render(&mut out, &status(), &ServerCounters::default());
        assert_eq!(out, first);
        assert_eq!(out.capacity(), cap);
    }
}
