//! SDP (RFC 4566) session descriptions for RTSP DESCRIBE (RFC 2326 Appendix C).
