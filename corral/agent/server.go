package main

import (
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// agent holds everything the handlers share.
type agent struct {
	mu             sync.RWMutex
	envVars        map[string]string // from /init, applied to later commands
	accessToken    string            // from /init; when set, requests must carry it
	defaultUser    string
	defaultWorkdir string

	reaper   *reaper
	procs    *registry
	watchers *watcherSet
	cpu      cpuSampler
}

func newAgent() *agent {
	return &agent{
		envVars:  map[string]string{},
		reaper:   newReaper(),
		procs:    &registry{procs: map[int]*process{}},
		watchers: &watcherSet{m: map[string]*watcher{}},
	}
}

func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/init", a.handleInit)
	mux.HandleFunc("/envs", a.handleEnvs)
	mux.HandleFunc("/metrics", a.handleMetrics)
	mux.HandleFunc("/files", a.handleFiles)
	a.registerProcessService(mux)
	a.registerFilesystemService(mux)
	return a.checkToken(mux)
}

// checkToken enforces the /init access token (envd semantics): every request
// but /health must carry it in X-Access-Token once one is set.
func (a *agent) checkToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.RLock()
		tok := a.accessToken
		a.mu.RUnlock()
		if tok != "" && r.URL.Path != "/health" &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Access-Token")), []byte(tok)) != 1 {
			if strings.HasPrefix(r.URL.Path, "/process.") || strings.HasPrefix(r.URL.Path, "/filesystem.") {
				writeUnaryError(w, errf("unauthenticated", "invalid access token"))
			} else {
				writeFileError(w, http.StatusUnauthorized, "invalid access token")
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

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
	a := newAgent()
	ln, err := listen(*listenSpec)
	if err != nil {
		return err
	}
	log.Printf("corral-agent: serving on %s (pid %d)", *listenSpec, os.Getpid())
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 30 * time.Second}
	// As PID 1 the kernel only delivers signals we handle: make SIGTERM/SIGINT
	// a clean shutdown (which, for init, ends the sandbox).
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-stop
		log.Printf("corral-agent: %v, shutting down", sig)
		for _, p := range a.procs.list() {
			_ = p.signal(syscall.SIGTERM)
		}
		_ = srv.Close() // also removes the unix socket file
	}()
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
