"""The code-interpreter server that runs inside a sandbox on :49999 and speaks the e2b-code-interpreter protocol."""
