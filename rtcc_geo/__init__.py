"""rtcc-geo: open geospatial analytics for police Real Time Crime Centers."""

__version__ = "0.1.0"
