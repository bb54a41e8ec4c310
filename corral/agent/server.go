package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// listen parses "unix:/path" or "tcp:host:port" and opens the listener.
func listen(spec string) (net.Listener, error) {
	switch {
	case strings.HasPrefix(spec, "unix:"):
		path := strings.TrimPrefix(spec, "unix:")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		// A stale socket from an earlier run would make bind fail.
		_ = os.Remove(path)
		return net.Listen("unix", path)
	case strings.HasPrefix(spec, "tcp:"):
		return net.Listen("tcp", strings.TrimPrefix(spec, "tcp:"))
	}
	return nil, fmt.Errorf("bad --listen %q (want unix:/path or tcp:host:port)", spec)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listenSpec := fs.String("listen", "unix:/run/corral/agent.sock", "unix:/path or tcp:host:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := listen(*listenSpec)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux}
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
