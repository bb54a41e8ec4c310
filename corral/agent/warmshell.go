package main

// A login shell started ahead of time for the default user. The SDK runs every
// command as `/bin/bash -l -c CMD`; in gVisor (ptrace) the fork+exec of bash and
// its login start-up cost ~20 ms, the bulk of a command's round trip. The warm
// shell has done both already and waits on fd 3 for a script (cd, exports,
// `eval CMD`) that it sources; the next one is started in the background.

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The shell reads its whole script from fd 3 (source reads to EOF, in chunks)
// before running any of it, and the script's first line closes fd 3 so the
// command's own children never inherit it.
const warmBootstrap = ". /proc/self/fd/3"

type warmShell struct {
	pid     int
	uid     uint32
	gen     uint64
	ctl     *os.File   // write end of the shell's fd 3
	outputs []*os.File // read ends of its stdout, stderr
	exitCh  chan syscall.WaitStatus
}

type warmState struct {
	enabled bool
	mu      sync.Mutex
	shell   *warmShell
	filling atomic.Bool
	gen     atomic.Uint64 // bumped by /init: env vars or the default user changed
}

// warmRefillAfter: how long a running command may hold back the next warm shell.
const warmRefillAfter = 100 * time.Millisecond

// warmCommand is the CMD of a `bash -l -c CMD` request the warm shell can take:
// no PTY, no stdin, nothing else on the command line.
func warmCommand(req *startRequest) (string, bool) {
	c := req.Process
	if req.Pty != nil || (req.Stdin != nil && *req.Stdin) || c == nil {
		return "", false
	}
	if c.Cmd != "/bin/bash" || len(c.Args) != 3 || c.Args[0] != "-l" || c.Args[1] != "-c" {
		return "", false
	}
	for k := range c.Envs {
		if !isShellName(k) {
			return "", false
		}
	}
	return c.Args[2], true
}

func isShellName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// warmScript is what the shell sources: the request's cwd and env vars, then
// the command through eval (a syntax error exits 2, as with `bash -c`).
func warmScript(cwd string, envs map[string]string, cmd string) []byte {
	var b strings.Builder
	b.WriteString("exec 3<&-\ncd -- " + shellQuote(cwd) + " || exit 1\n")
	for k, v := range envs {
		b.WriteString("export " + k + "=" + shellQuote(v) + "\n")
	}
	b.WriteString("eval " + shellQuote(cmd) + "\n")
	return []byte(b.String())
}

// invalidateWarm drops the warm shell (after /init changed what it inherited)
// and starts a new one.
func (a *agent) invalidateWarm() {
	if !a.warm.enabled {
		return
	}
	a.warm.gen.Add(1)
	a.warm.mu.Lock()
	w := a.warm.shell
	a.warm.shell = nil
	a.warm.mu.Unlock()
	if w != nil {
		w.discard()
	}
	go a.refillWarm()
}

func (w *warmShell) discard() {
	_ = syscall.Kill(-w.pid, syscall.SIGKILL)
	_ = w.ctl.Close()
	for _, f := range w.outputs {
		_ = f.Close()
	}
	// The reaper delivers its exit status to the buffered exitCh; nobody waits.
}

// refillWarm starts the next warm shell for the current default user (one at a time).
func (a *agent) refillWarm() {
	if !a.warm.enabled || !a.warm.filling.CompareAndSwap(false, true) {
		return
	}
	defer a.warm.filling.Store(false)
	a.warm.mu.Lock()
	have := a.warm.shell != nil
	a.warm.mu.Unlock()
	if have {
		return
	}
	gen := a.warm.gen.Load()
	u, err := a.resolveUser("")
	if err != nil {
		return
	}
	w, err := a.startWarm(u, gen)
	if err != nil {
		return
	}
	a.warm.mu.Lock()
	if a.warm.shell == nil && a.warm.gen.Load() == gen {
		a.warm.shell, w = w, nil
	}
	a.warm.mu.Unlock()
	if w != nil {
		w.discard()
	}
}

func (a *agent) startWarm(u *userInfo, gen uint64) (*warmShell, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	var opened []*os.File
	closeAll := func() {
		for _, f := range opened {
			_ = f.Close()
		}
	}
	opened = append(opened, devnull)
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	opened = append(opened, outR, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	opened = append(opened, errR, errW)
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	opened = append(opened, ctlR, ctlW)
	// The shell re-opens its fd 3 through /proc/self/fd (a pipe inode is checked like a file): make it the user's.
	if err := ctlR.Chown(int(u.UID), int(u.GID)); err != nil {
		closeAll()
		return nil, err
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if os.Getuid() == 0 && (u.UID != 0 || u.GID != 0) {
		attr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	cwd := u.Home
	if st, err := os.Stat(cwd); err != nil || !st.IsDir() {
		cwd = "/"
	}
	exitCh := make(chan syscall.WaitStatus, 1)
	env := a.buildEnv(u, nil)
	pid, err := a.reaper.start(func() (int, error) {
		proc, err := os.StartProcess("/bin/bash", []string{"/bin/bash", "-l", "-c", warmBootstrap},
			&os.ProcAttr{Dir: cwd, Env: env, Files: []*os.File{devnull, outW, errW, ctlR}, Sys: attr})
		if err != nil {
			return 0, err
		}
		return proc.Pid, nil
	}, exitCh)
	for _, f := range []*os.File{devnull, outW, errW, ctlR} {
		_ = f.Close()
	}
	if err != nil {
		for _, f := range []*os.File{outR, errR, ctlW} {
			_ = f.Close()
		}
		return nil, err
	}
	return &warmShell{pid: pid, uid: u.UID, gen: gen, ctl: ctlW, outputs: []*os.File{outR, errR}, exitCh: exitCh}, nil
}

// claimWarm hands the request to the warm shell if it fits (same user, same
// /init generation, still alive); false means: spawn as usual.
func (a *agent) claimWarm(req *startRequest, u *userInfo, cwd, cmd string, timeout time.Duration) (*process, *subscriber, bool) {
	if !a.warm.enabled {
		return nil, nil, false
	}
	a.warm.mu.Lock()
	w := a.warm.shell
	a.warm.shell = nil
	a.warm.mu.Unlock()
	if w == nil {
		go a.refillWarm()
		return nil, nil, false
	}
	if w.uid != u.UID || w.gen != a.warm.gen.Load() {
		w.discard()
		go a.refillWarm()
		return nil, nil, false
	}
	select {
	case <-w.exitCh: // died while waiting (e.g. killed from inside)
		w.discard()
		go a.refillWarm()
		return nil, nil, false
	default:
	}
	p := &process{
		pid:    w.pid,
		tag:    req.Tag,
		config: *req.Process,
		subs:   map[*subscriber]struct{}{},
		exitCh: w.exitCh,
		done:   make(chan struct{}),
	}
	sub, _ := p.subscribe()
	a.procs.add(p)
	if timeout > 0 {
		p.timer = time.AfterFunc(timeout, func() { _ = p.signal(syscall.SIGKILL) })
	}
	var wg sync.WaitGroup
	kinds := []string{"stdout", "stderr"}
	for i, f := range w.outputs {
		wg.Add(1)
		go p.pump(f, kinds[i], &wg)
	}
	go p.finish(a, w.outputs, &wg)
	// The next shell starts once this command is done, or warmRefillAfter into
	// a longer one (a server started in the background): the fork+exec and
	// login start-up of a bash in gVisor take the CPU a short command's round
	// trip needs (started at claim time, they doubled it: ~11 -> ~5.5 ms p50).
	// Waiting for a refill in progress, tried for commands back to back, was
	// slower than the cold path.
	go func() {
		t := time.NewTimer(warmRefillAfter)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		}
		a.refillWarm()
	}()
	script := warmScript(cwd, req.Process.Envs, cmd)
	go func() { // a script larger than the pipe buffer must not block the Start call
		_, _ = w.ctl.Write(script)
		_ = w.ctl.Close()
	}()
	return p, sub, true
}
