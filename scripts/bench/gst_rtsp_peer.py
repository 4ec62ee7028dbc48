#!/usr/bin/python3
"""The benchmark's peer: GStreamer's RTSP server (Debian's gst-rtsp-server via gi), one shared
media at rtsp://127.0.0.1:PORT/live, fed the same Annex B H.264 bytes rillcast gets.

  --source stdin : fdsrc fd=0 ! h264parse ! rtph264pay  (the bench feeds both servers from
                   examples/h264_feed.rs, so neither server pays for encoding)
  --source x264  : videotestsrc ! x264enc ... (needs gstreamer1.0-plugins-ugly)

Bound to 127.0.0.1; runs until killed (or --seconds pass)."""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINES = {
    # do-timestamp: buffers get the running time they arrive at, like a live camera pipe.
    "stdin": "( fdsrc fd=0 do-timestamp=true ! h264parse ! "
    "rtph264pay name=pay0 pt=96 config-interval=-1 )",
    "x264": "( videotestsrc is-live=true ! video/x-raw,width=1280,height=720,framerate=30/1 ! "
    "x264enc tune=zerolatency bitrate=2000 key-int-max=30 speed-preset=ultrafast ! "
    "rtph264pay name=pay0 pt=96 config-interval=-1 )",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--source", choices=sorted(PIPELINES), default="stdin")
    ap.add_argument("--seconds", type=int, default=0)
    a = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    server.set_backlog(1024)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINES[a.source])
    factory.set_shared(True)
    # One pipeline for the whole run: it must not stop reading the pipe between viewers.
    factory.set_suspend_mode(GstRtspServer.RTSPSuspendMode.NONE)
    factory.set_stop_on_disconnect(False)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        sys.exit("gst_rtsp_peer: cannot listen on 127.0.0.1:%d" % a.port)
    print("gst_rtsp_peer: listening on rtsp://127.0.0.1:%d/live (%s)" % (a.port, a.source),
          flush=True)
    loop = GLib.MainLoop()
    if a.seconds:
        GLib.timeout_add_seconds(a.seconds, loop.quit)
    loop.run()


if __name__ == "__main__":
    main()
