"""The in-store NVR box: capture, tracking, matching and alerts."""
