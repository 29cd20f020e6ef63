"""One module per `xixin` subcommand: `add_parser(subparsers)` and its handlers."""
