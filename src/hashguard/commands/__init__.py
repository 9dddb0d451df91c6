"""One module per ``hashguard`` subcommand; each defines ``register(subparsers)``."""
