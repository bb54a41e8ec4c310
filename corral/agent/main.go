// Command corral-agent is the init process (PID 1) of every Corral sandbox.
// It serves the envd HTTP/Connect surface on a unix or tcp listener.
//
//	corral-agent serve --listen unix:/run/corral/agent.sock   (or tcp:127.0.0.1:49983)
//
// Signals: SIGTERM/SIGINT shut down (SIGTERM to every started process group);
// SIGUSR1 quiesces (listener and all connections closed, the unix socket
// file removed: runsc can then checkpoint); SIGUSR2 listens again (after a
// restore). Logs go to stderr.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: corral-agent serve --listen unix:/path|tcp:host:port")
		os.Exit(2)
	}
	if err := serve(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "corral-agent:", err)
		os.Exit(1)
	}
}
