"""``retauth kiosk``: a loopback web UI and JSON API for an on-device retinal scanner.

The kiosk keeps the photograph on the device: images arrive from a local upload, a camera or a
watched folder, are processed in memory by a model loaded once at start-up, and only a
decision (and a vessel overlay for the person in front of the screen) goes back to the page.
"""
