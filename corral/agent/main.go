// Command corral-agent is the init process (PID 1) of every Corral sandbox.
// It serves the envd HTTP/Connect surface on a unix or tcp listener.
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
