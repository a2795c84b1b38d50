"""`make bench`: the platform's overhead against direct calls to the provider stand-ins."""
