package main

// Processes started through the process service: spawning, output fan-out to
// any number of subscribed streams, and the end event once the child is reaped
// and its output drained.

import (
	"errors"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// JSON shapes of process.proto (proto3 JSON names).
type processConfig struct {
	Cmd  string            `json:"cmd"`
	Args []string          `json:"args,omitempty"`
	Envs map[string]string `json:"envs,omitempty"`
	Cwd  *string           `json:"cwd,omitempty"`
}

type ptySize struct {
	Cols uint32 `json:"cols"`
	Rows uint32 `json:"rows"`
}

type ptyConfig struct {
	Size *ptySize `json:"size,omitempty"`
}

type processEvent struct {
	Start     *startEvent `json:"start,omitempty"`
	Data      *dataEvent  `json:"data,omitempty"`
	End       *endEvent   `json:"end,omitempty"`
	Keepalive *struct{}   `json:"keepalive,omitempty"`
}

type startEvent struct {
	Pid uint32 `json:"pid"`
}

type dataEvent struct {
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
	Pty    []byte `json:"pty,omitempty"`
}

type endEvent struct {
	ExitCode int32   `json:"exitCode"`
	Exited   bool    `json:"exited"`
	Status   string  `json:"status"`
	Error    *string `json:"error,omitempty"`
}

// drainGrace is how long output is still awaited after the child exited when a
// descendant (e.g. `server &`) keeps the pipe open; reset by every chunk.
const drainGrace = 100 * time.Millisecond

// Output of one command waiting for a slow reader is capped: each subscriber
// queues at most subscriberQueue chunks of up to outputChunk bytes, then the
// pump blocks and the command blocks on its full pipe (backpressure, not loss).
const (
	outputChunk         = 32 << 10
	defaultOutputBuffer = 1 << 20
)

var subscriberQueue = defaultOutputBuffer / outputChunk

// setOutputBuffer sets the per-reader cap in bytes (at least one chunk).
func setOutputBuffer(bytes int) {
	subscriberQueue = bytes / outputChunk
	if subscriberQueue < 1 {
		subscriberQueue = 1
	}
}

type subscriber struct {
	ch   chan processEvent
	gone chan struct{}
}

type process struct {
	pid    int
	tag    *string
	config processConfig

	ptyMaster *os.File // nil unless a PTY process
	stdinMu   sync.Mutex
	stdin     *os.File // our write end; nil if none or closed

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	ended  bool
	exited atomic.Bool

	exitCh chan syscall.WaitStatus
	done   chan struct{}
	timer  *time.Timer
}

// subscribe adds a stream; false if the process already ended.
func (p *process) subscribe() (*subscriber, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return nil, false
	}
	s := &subscriber{ch: make(chan processEvent, subscriberQueue), gone: make(chan struct{})}
	p.subs[s] = struct{}{}
	return s, true
}

func (p *process) unsubscribe(s *subscriber) {
	p.mu.Lock()
	delete(p.subs, s)
	p.mu.Unlock()
	close(s.gone)
}

// broadcast delivers ev to every subscriber, waiting for slow ones (this is
// the backpressure that keeps memory bounded) unless they went away.
func (p *process) broadcast(ev processEvent, final bool) {
	p.mu.Lock()
	subs := make([]*subscriber, 0, len(p.subs))
	for s := range p.subs {
		subs = append(subs, s)
	}
	if final {
		p.ended = true
	}
	p.mu.Unlock()
	for _, s := range subs {
		select {
		case s.ch <- ev:
		case <-s.gone:
		}
	}
}

// pump forwards one output fd until EOF (or, after exit, until it stays idle
// for drainGrace).
func (p *process) pump(f *os.File, kind string, wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, outputChunk)
	for {
		if p.exited.Load() {
			_ = f.SetReadDeadline(time.Now().Add(drainGrace))
		}
		n, err := f.Read(buf)
		if n > 0 {
			chunk := append([]byte(nil), buf[:n]...)
			var d dataEvent
			switch kind {
			case "stdout":
				d.Stdout = chunk
			case "stderr":
				d.Stderr = chunk
			default:
				d.Pty = chunk
			}
			p.broadcast(processEvent{Data: &d}, false)
		}
		if err != nil {
			return // EOF, EIO (pty slave closed) or drain deadline
		}
	}
}

// finish waits for the exit status, then for the output to drain, then
// emits the end event and forgets the process.
func (p *process) finish(a *agent, outputs []*os.File, wg *sync.WaitGroup) {
	ws := <-p.exitCh
	p.exited.Store(true)
	if p.timer != nil {
		p.timer.Stop()
	}
	for _, f := range outputs {
		_ = f.SetReadDeadline(time.Now().Add(drainGrace))
	}
	wg.Wait()
	for _, f := range outputs {
		_ = f.Close()
	}
	p.closeStdin()
	end := &endEvent{Exited: ws.Exited()}
	if ws.Exited() {
		end.ExitCode = int32(ws.ExitStatus())
		end.Status = "exit status " + strconv.Itoa(ws.ExitStatus())
	} else {
		end.ExitCode = -1
		end.Status = "signal: " + ws.Signal().String()
	}
	a.procs.remove(p)
	p.broadcast(processEvent{End: end}, true)
	close(p.done)
}

func (p *process) closeStdin() bool {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil {
		return false
	}
	_ = p.stdin.Close()
	p.stdin = nil
	return true
}

// signal sends sig to the process group (so `bash -c` children die with it),
// falling back to the process itself.
func (p *process) signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.pid, sig); err == nil {
		return nil
	}
	return syscall.Kill(p.pid, sig)
}

// registry of live processes, by pid.
type registry struct {
	mu    sync.Mutex
	procs map[int]*process
}

func (r *registry) add(p *process) {
	r.mu.Lock()
	r.procs[p.pid] = p
	r.mu.Unlock()
}

func (r *registry) remove(p *process) {
	r.mu.Lock()
	if r.procs[p.pid] == p {
		delete(r.procs, p.pid)
	}
	r.mu.Unlock()
}

func (r *registry) list() []*process {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*process, 0, len(r.procs))
	for _, p := range r.procs {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

type processSelector struct {
	Pid *uint32 `json:"pid,omitempty"`
	Tag *string `json:"tag,omitempty"`
}

func (r *registry) find(sel *processSelector) (*process, error) {
	if sel == nil || (sel.Pid == nil && sel.Tag == nil) {
		return nil, errf("invalid_argument", "process selector (pid or tag) is required")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if sel.Pid != nil {
		if p, ok := r.procs[int(*sel.Pid)]; ok {
			return p, nil
		}
		return nil, errf("not_found", "process with pid %d not found", *sel.Pid)
	}
	for _, p := range r.procs {
		if p.tag != nil && *p.tag == *sel.Tag {
			return p, nil
		}
	}
	return nil, errf("not_found", "process with tag %q not found", *sel.Tag)
}

// buildEnv layers: agent env, the user's identity, /init vars, request vars.
func (a *agent) buildEnv(u *userInfo, req map[string]string) []string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	env["HOME"] = u.Home
	env["USER"] = u.Name
	env["LOGNAME"] = u.Name
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	a.mu.RLock()
	for k, v := range a.envVars {
		env[k] = v
	}
	a.mu.RUnlock()
	for k, v := range req {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

var errNoCwd = errors.New("working directory does not exist")
