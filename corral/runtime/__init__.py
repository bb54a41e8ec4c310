"""How a sandbox is isolated: one module per backend, all behind the `Runtime` protocol."""
