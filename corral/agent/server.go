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
	envFile        string            // where /init's env vars are published for processes started before it ("" off)
	accessToken    string            // from /init; when set, requests must carry it
	defaultUser    string
	defaultWorkdir string

	reaper   *reaper
	procs    *registry
	watchers *watcherSet
	cpu      cpuSampler
	fwd      forwards  // spliced in-sandbox TCP connections (forward.go)
	warm     warmState // the next `bash -l -c` command's shell, started ahead (warmshell.go)
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
	mux.HandleFunc(forwardPrefix, a.handleForward)
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
	warm := fs.Bool("warm-shell", true, "keep a login shell started ahead for the default user (warmshell.go)")
	envFile := fs.String("env-file", defaultEnvFile, "publish /init's env vars here, readable by the default user (\"\": off)")
	outputBuffer := fs.Int("output-buffer", defaultOutputBuffer, "bytes of one command's output held for a slow reader")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setOutputBuffer(*outputBuffer)
	a := newAgent()
	a.warm.enabled = *warm
	a.envFile = *envFile
	l := &endpoint{spec: *listenSpec, handler: a.handler()}
	if err := l.open(); err != nil {
		return err
	}
	log.Printf("corral-agent: serving on %s (pid %d)", *listenSpec, os.Getpid())
	// A pooled sandbox's first command comes right after /init, which keeps
	// this shell when it changes no env var: start it now, not at that command.
	go a.refillWarm()
	// As PID 1 the kernel only delivers signals we handle. SIGTERM/SIGINT: a
	// clean shutdown (which, for init, ends the sandbox). SIGUSR1: quiesce,
	// i.e. close the listener and every connection so that no host socket is
	// held (runsc cannot checkpoint a bound host UDS); SIGUSR2: listen again.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	for sig := range sigs {
		switch sig {
		case syscall.SIGUSR1:
			l.close()
			a.fwd.closeAll()
			log.Printf("corral-agent: quiesced (listener closed)")
		case syscall.SIGUSR2:
			if err := l.open(); err != nil {
				log.Printf("corral-agent: reopen %s: %v", l.spec, err)
			} else {
				log.Printf("corral-agent: listening again on %s", l.spec)
			}
		default:
			log.Printf("corral-agent: %v, shutting down", sig)
			for _, p := range a.procs.list() {
				_ = p.signal(syscall.SIGTERM)
			}
			l.close()
			a.fwd.closeAll()
			return nil
		}
	}
	return nil
}

// endpoint is the listener plus its HTTP server; it can be closed and opened
// again while the agent's state (processes, watchers) lives on.
type endpoint struct {
	spec    string
	handler http.Handler
	mu      sync.Mutex
	srv     *http.Server
}

func (e *endpoint) open() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return nil
	}
	ln, err := listen(e.spec)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: e.handler, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 15 * time.Minute}
	e.srv = srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("corral-agent: serve: %v", err)
		}
	}()
	return nil
}

// close stops listening (a unix socket file is removed) and drops every
// connection, streams included: their processes keep running.
func (e *endpoint) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv == nil {
		return
	}
	_ = e.srv.Close()
	e.srv = nil
}
