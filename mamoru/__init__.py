"""mamoru (守る): lawful face identification against shoplifting, for store edge boxes."""

__version__ = "0.1.0"
