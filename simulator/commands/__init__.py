"""One module per `moesim` subcommand: each has HELP, add_arguments(parser) and run(args) -> int."""
