"""The demo: the whole lifecycle of both domains on the local real services (``inferloop demo``)."""
