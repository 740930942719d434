"""The ``rtcc-geo`` command line. One module per command group; each defines
``register(subparsers)``, and :mod:`rtcc_geo.cli.main` discovers them."""
