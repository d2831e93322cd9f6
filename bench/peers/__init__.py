"""What the worker is measured against: pass-through loops and the Quix Streams peer."""
