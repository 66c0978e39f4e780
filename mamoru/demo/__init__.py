"""The one-command demo: a real RTSP camera playing a composed clip, a local registry,
the edge loop."""
